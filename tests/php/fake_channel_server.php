<?php
/**
 * A stand-in for Workerman's Channel\Server (walkor/channel up to 1.2.1),
 * for tests: Workerman cannot be installed here. It keeps the PHP server's
 * behaviour that matters to a groupcast node in workerman mode: bodies are
 * PHP's own unserialize() (objects not allowed, unlike the real one),
 * `subscribe`, `unsubscribe` and `publish` as in its Server.php, every
 * publish echoed to the publisher too, unknown keys (`exclude_self`) and
 * unknown types (`auth`) ignored, no replies, and a "\n" after every event
 * body, as servers up to 1.2.1 send.
 *
 *   php tests/php/fake_channel_server.php     prints "listening channel=ADDR"
 */

declare(strict_types=1);

$server = stream_socket_server('tcp://127.0.0.1:0', $errno, $error);
$server || exit("listen: $error\n");
echo 'listening channel=' . stream_socket_get_name($server, false) . "\n";

$clients = [];   // id => socket
$buffers = [];   // id => bytes not yet framed
$channels = [];  // channel => [id => id]
$next = 1;
while (true) {
    $read = [$server, ...array_values($clients)];
    $none = null;
    if (stream_select($read, $none, $none, null) === false) {
        exit(1);
    }
    foreach ($read as $socket) {
        if ($socket === $server) {
            $client = stream_socket_accept($server);
            $clients[$next] = $client;
            $buffers[$next] = '';
            $next++;
            continue;
        }
        $id = array_search($socket, $clients, true);
        $chunk = fread($socket, 65536);
        if ($chunk === '' || $chunk === false) {
            fclose($socket);
            unset($clients[$id], $buffers[$id]);
            foreach ($channels as $name => $ids) {
                unset($channels[$name][$id]);
            }
            continue;
        }
        $buffers[$id] .= $chunk;
        while (strlen($buffers[$id]) >= 4) {
            $len = unpack('N', $buffers[$id])[1];
            if (strlen($buffers[$id]) < $len) {
                break;
            }
            $body = substr($buffers[$id], 4, $len - 4);
            $buffers[$id] = substr($buffers[$id], $len);
            if ($body === '') {
                continue; // a ping
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
                        $event = serialize(['type' => 'event', 'channel' => $channel, 'data' => $data['data']]) . "\n";
                        foreach ($channels[$channel] ?? [] as $to) {
                            fwrite($clients[$to], pack('N', 4 + strlen($event)) . $event);
                        }
                    }
                    break;
            }
        }
    }
}
