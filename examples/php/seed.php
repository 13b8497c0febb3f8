<?php
/**
 * The seed (a Workerman channel + websocket group example) as a PHP host of
 * groupcast through FFI. Built-in commands are off: this script implements
 * the client protocol itself,
 *
 *   {"cmd":"add_group","group_id":"123"}
 *   {"cmd":"leave_group","group_id":"123"}
 *   {"cmd":"send_to_group","group_id":"123","message":"..."}
 *
 * from polled message events, with the join / leave / send_to_group
 * actions. groupcast does the networking on its own threads; this PHP code
 * runs only on PHP's thread, inside poll().
 *
 *   php examples/php/seed.php [--listen HOST:PORT] [--channel-listen HOST:PORT]
 *
 * Defaults are the seed's: websocket 0.0.0.0:1234, channel 127.0.0.1:2206.
 * Run from a checkout after `cargo build --release` (GROUPCAST_LIB
 * overrides the library path). Prints "listening websocket=ADDR
 * channel=ADDR", runs until SIGINT or SIGTERM, then stops cleanly. When it
 * cannot start (e.g. the port is busy) it prints one line
 * "groupcast: <why>" and exits 1.
 */

declare(strict_types=1);

require dirname(__DIR__, 2) . '/php/Groupcast.php';

use Groupcast\Server;

function usage(): never
{
    fwrite(STDERR, "usage: php examples/php/seed.php [--listen HOST:PORT] [--channel-listen HOST:PORT]\n");
    exit(2);
}

$listen = '0.0.0.0:1234';
$channelListen = '127.0.0.1:2206';
for ($i = 1; $i < $argc; $i++) {
    match ($argv[$i]) {
        '--listen' => $listen = $argv[++$i] ?? usage(),
        '--channel-listen' => $channelListen = $argv[++$i] ?? usage(),
        default => usage(),
    };
}

function reply_error(Server $server, int $conn, string $code, string $message): void
{
    $server->sendText($conn, json_encode(['type' => 'error', 'code' => $code, 'message' => $message]));
}

/** The seed's protocol, on one client message. */
function on_message(Server $server, int $conn, string $data, bool $binary): void
{
    if ($binary) {
        reply_error($server, $conn, 'binary_not_command', 'send commands as JSON text');
        return;
    }
    $command = json_decode($data);
    if (!$command instanceof stdClass) {
        reply_error($server, $conn, 'not_json', 'a command is a JSON object');
        return;
    }
    $cmd = $command->cmd ?? null;
    if (!is_string($cmd)) {
        reply_error($server, $conn, 'missing_cmd', 'the cmd field is missing');
        return;
    }
    if (!in_array($cmd, ['add_group', 'leave_group', 'send_to_group'], true)) {
        reply_error($server, $conn, 'unknown_cmd', 'use add_group, leave_group or send_to_group');
        return;
    }
    // 123 and "123" name the same group.
    $group = $command->group_id ?? null;
    if (!(is_string($group) && $group !== '') && !is_int($group)) {
        reply_error($server, $conn, 'missing_group_id', 'group_id must be a string or an integer');
        return;
    }
    $group = (string) $group;
    try {
        switch ($cmd) {
            case 'add_group':
                $server->join($conn, $group);
                break;
            case 'leave_group':
                $server->leave($conn, $group);
                break;
            case 'send_to_group':
                if (!property_exists($command, 'message')) {
                    reply_error($server, $conn, 'missing_message', 'the message field is missing');
                    return;
                }
                // A string goes as is; any other value as its JSON text.
                $message = $command->message;
                $text = is_string($message)
                    ? $message
                    : json_encode($message, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_PRESERVE_ZERO_FRACTION);
                $server->sendToGroup($group, $text);
                break;
        }
    } catch (Groupcast\GroupcastException $e) {
        // The client left meanwhile, or the group id is too long.
        reply_error($server, $conn, 'invalid_group_id', $e->getMessage());
    }
}

try {
    $server = Server::start([
        'listen' => $listen,
        'channel_listen' => $channelListen,
        'builtin_commands' => false,
    ]);
} catch (Groupcast\GroupcastException $e) {
    // One line and exit 1, e.g. "groupcast: cannot listen on
    // 0.0.0.0:1234: Address already in use (os error 98)".
    fwrite(STDERR, 'groupcast: ' . $e->getMessage() . "\n");
    exit(1);
}

$stop = false;
pcntl_async_signals(true);
pcntl_signal(SIGINT, function () use (&$stop) { $stop = true; });
pcntl_signal(SIGTERM, function () use (&$stop) { $stop = true; });

echo 'listening websocket=', $server->websocketAddress(), ' channel=', $server->channelAddress() ?? '', "\n";
fflush(STDOUT);

while (!$stop) {
    // A short timeout keeps signals handled promptly.
    $events = $server->poll(100);
    if ($events === null) {
        break;
    }
    foreach ($events as $event) {
        if ($event['type'] === 'message') {
            on_message($server, $event['conn'], $event['data'], $event['binary']);
        }
    }
}

$server->stop();
$server->free();
fwrite(STDERR, "stopped\n");
exit(0);
