<?php
/**
 * The benchmark's baseline for `groupcast channel`: a PHP channel server
 * that does per message what walkor/channel's Server.php does under
 * Workerman, for the `subscribe`, `unsubscribe`, `publish` and
 * `publishLoop` requests a channel benchmark sends. Workerman itself cannot
 * be installed here (no Composer repository is reachable), so this is a
 * stand-in written with PHP's own streams, and a kind one: it has none of
 * Workerman's layers (event objects, callbacks, connection objects,
 * protocol classes), so the real server can only be slower.
 *
 * What it keeps of the real one, because it decides the cost:
 * - one process, one select loop (Workerman's default event loop);
 * - each request body goes through unserialize(), each event is
 *   serialize()d once per channel and framed per subscriber
 *   (Frame::encode: the 4-byte length, then the body, with the "\n" the
 *   server appends);
 * - sockets are non-blocking with a send buffer per connection, written
 *   at once when it is empty and on writability otherwise, as
 *   TcpConnection::send does; past 1 MiB waiting (Workerman's default
 *   maxSendBufferSize) a message to that connection is dropped and
 *   counted, as TcpConnection does.
 *
 * It is also the tests' stand-in for the PHP Channel\Server
 * (tests/php/test_channel.php): like the real one it sends no replies,
 * ignores request types and keys it does not know (`auth`,
 * `exclude_self`), sends a publisher that is subscribed its own event, and
 * ends every event body with "\n" (servers up to walkor/channel 1.2.1).
 *
 *   php benches/baselines/php/channel_server.php   prints "listening channel=ADDR"
 */

declare(strict_types=1);

const MAX_SEND_BUFFER = 1 << 20;

$server = stream_socket_server('tcp://127.0.0.1:0', $errno, $error);
if (!$server) {
    fwrite(STDERR, "listen: $error\n");
    exit(1);
}
stream_set_blocking($server, false);
echo 'listening channel=' . stream_socket_get_name($server, false) . "\n";

$clients = [];   // id => socket
$inbox = [];     // id => bytes read, not yet a whole frame
$outbox = [];    // id => bytes framed, not yet written
$channels = [];  // channel => [id => id]
$dropped = 0;
$next = 1;

pcntl_async_signals(true);
pcntl_signal(SIGTERM, function () use (&$dropped) {
    fwrite(STDERR, "dropped $dropped\n");
    exit(0);
});

/** TcpConnection::send: write now when nothing waits, else queue (bounded). */
function send(int $id, string $body): void
{
    global $clients, $outbox, $dropped;
    $frame = pack('N', 4 + strlen($body)) . $body;
    if ($outbox[$id] === '') {
        $written = @fwrite($clients[$id], $frame);
        if ($written === strlen($frame)) {
            return;
        }
        $frame = substr($frame, $written ?: 0);
    } elseif (strlen($outbox[$id]) >= MAX_SEND_BUFFER) {
        $dropped++;
        return;
    }
    $outbox[$id] .= $frame;
}

function forget(int $id): void
{
    global $clients, $inbox, $outbox, $channels;
    fclose($clients[$id]);
    unset($clients[$id], $inbox[$id], $outbox[$id]);
    foreach ($channels as $name => $ids) {
        unset($channels[$name][$id]);
    }
}

/** Server::onMessage, for the request types a channel benchmark sends. */
function on_message(int $id, string $body): void
{
    global $channels;
    if ($body === '') {
        return; // a ping
    }
    $data = unserialize($body, ['allowed_classes' => false]);
    switch ($data['type'] ?? null) {
        case 'subscribe':
            foreach ($data['channels'] as $channel) {
                $channels[$channel][$id] = $id;
            }
            break;
        case 'unsubscribe':
            foreach ($data['channels'] as $channel) {
                unset($channels[$channel][$id]);
            }
            break;
        case 'publish':
            foreach ($data['channels'] as $channel) {
                if (empty($channels[$channel])) {
                    continue;
                }
                $event = serialize(['type' => 'event', 'channel' => $channel, 'data' => $data['data']]) . "\n";
                foreach ($channels[$channel] as $to) {
                    send($to, $event);
                }
            }
            break;
        case 'publishLoop':
            foreach ($data['channels'] as $channel) {
                if (empty($channels[$channel])) {
                    continue;
                }
                $event = serialize(['type' => 'event', 'channel' => $channel, 'data' => $data['data']]) . "\n";
                $to = next($channels[$channel]);
                if ($to === false) {
                    $to = reset($channels[$channel]);
                }
                send($to, $event);
            }
            break;
    }
}

while (true) {
    $read = [$server, ...array_values($clients)];
    $write = [];
    foreach ($outbox as $id => $bytes) {
        if ($bytes !== '') {
            $write[] = $clients[$id];
        }
    }
    $none = null;
    if (@stream_select($read, $write, $none, null) === false) {
        continue; // interrupted by a signal
    }
    foreach ($write as $socket) {
        $id = array_search($socket, $clients, true);
        $written = @fwrite($socket, $outbox[$id]);
        $outbox[$id] = substr($outbox[$id], $written ?: 0);
    }
    foreach ($read as $socket) {
        if ($socket === $server) {
            $client = @stream_socket_accept($server, 0);
            if ($client) {
                stream_set_blocking($client, false);
                stream_set_write_buffer($client, 0);
                $clients[$next] = $client;
                $inbox[$next] = '';
                $outbox[$next] = '';
                $next++;
            }
            continue;
        }
        $id = array_search($socket, $clients, true);
        if ($id === false) {
            continue;
        }
        $chunk = fread($socket, 65536);
        if ($chunk === '' || $chunk === false) {
            if (feof($socket)) {
                forget($id);
            }
            continue;
        }
        $inbox[$id] .= $chunk;
        $at = 0;
        $length = strlen($inbox[$id]);
        while ($length - $at >= 4) {
            $size = unpack('N', $inbox[$id], $at)[1];
            if ($size < 4 || $length - $at < $size) {
                break;
            }
            on_message($id, substr($inbox[$id], $at + 4, $size - 4));
            $at += $size;
        }
        $inbox[$id] = substr($inbox[$id], $at);
    }
}
