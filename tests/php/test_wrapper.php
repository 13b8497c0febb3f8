<?php
/**
 * The PHP wrapper over FFI: the declarations load, the version is checked,
 * a websocket round trip goes through poll, errors become exceptions with
 * the result code, stop is idempotent.
 */

declare(strict_types=1);

require dirname(__DIR__, 2) . '/php/Groupcast.php';

use Groupcast\GroupcastException;
use Groupcast\Library;
use Groupcast\Server;

$checks = 0;
function check(bool $cond, string $what): void
{
    global $checks;
    if (!$cond) {
        fwrite(STDERR, "check failed: $what\n");
        exit(1);
    }
    $checks++;
}

/** Throws-check: $f must throw a GroupcastException with $code. */
function check_throws(int $code, callable $f, string $what): void
{
    try {
        $f();
    } catch (GroupcastException $e) {
        check($e->getCode() === $code, "$what: code {$e->getCode()} ({$e->getMessage()}), expected $code");
        return;
    }
    check(false, "$what: no exception");
}

/** A minimal websocket client: handshake, masked text frames, unmasked reads. */
final class Client
{
    /** @var resource */
    public $socket;

    public function __construct(string $addr, string $path = '/')
    {
        $this->socket = stream_socket_client("tcp://$addr", $errno, $error, 5);
        check($this->socket !== false, "connect: $error");
        stream_set_timeout($this->socket, 5);
        fwrite($this->socket, "GET $path HTTP/1.1\r\nHost: $addr\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            . "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
        $head = '';
        while (!str_ends_with($head, "\r\n\r\n")) {
            $byte = fread($this->socket, 1);
            check($byte !== false && $byte !== '', 'handshake response');
            $head .= $byte;
        }
        check(str_starts_with($head, 'HTTP/1.1 101'), 'handshake accepted');
    }

    public function send(string $text, int $opcode = 1): void
    {
        $n = strlen($text);
        $header = chr(0x80 | $opcode) . ($n < 126 ? chr(0x80 | $n) : chr(0x80 | 126) . pack('n', $n));
        $mask = random_bytes(4);
        $masked = '';
        for ($i = 0; $i < $n; $i++) {
            $masked .= $text[$i] ^ $mask[$i % 4];
        }
        fwrite($this->socket, $header . $mask . $masked);
    }

    private function read(int $n): string
    {
        $data = '';
        while (strlen($data) < $n) {
            $chunk = fread($this->socket, $n - strlen($data));
            check($chunk !== false && $chunk !== '', 'frame arrives');
            $data .= $chunk;
        }
        return $data;
    }

    /** @return array{int, string} opcode and payload */
    public function recv(): array
    {
        [$b0, $b1] = array_values(unpack('C2', $this->read(2)));
        $n = $b1 & 0x7f;
        if ($n === 126) {
            $n = unpack('n', $this->read(2))[1];
        } elseif ($n === 127) {
            $n = unpack('J', $this->read(8))[1];
        }
        return [$b0 & 0x0f, $n > 0 ? $this->read($n) : ''];
    }
}

// The library is the version the declarations describe.
$ffi = Library::ffi();
check($ffi->groupcast_version() === Library::VERSION, 'library version');
check(str_starts_with(Library::path(), '/'), 'the library path is absolute');

// A missing override is an error, not a silent fallback.
$saved = getenv('GROUPCAST_LIB');
putenv('GROUPCAST_LIB=/nonexistent/libgroupcast.so');
check_throws(0, fn () => Library::path(), 'missing GROUPCAST_LIB');
$saved === false ? putenv('GROUPCAST_LIB') : putenv("GROUPCAST_LIB=$saved");

$server = Server::start([
    'listen' => '127.0.0.1:0',
    'channel_listen' => '127.0.0.1:0',
    'workers' => 2,
    'events' => Server::EVENTS_CONNECT | Server::EVENTS_MESSAGE | Server::EVENTS_CLOSE,
]);
$addr = $server->websocketAddress();
check(preg_match('/^127\.0\.0\.1:\d+$/', $addr) === 1, "websocket address $addr");
check($server->channelAddress() !== null, 'channel address');
check($server->notifyFd() >= 0, 'notify fd');
check($server->poll(0) === [], 'nothing to poll yet');

$client = new Client($addr, '/php?user=1');
$events = $server->poll(5000);
check(count($events) === 1 && $events[0]['type'] === 'connect', 'connect event');
check($events[0]['path'] === '/php' && $events[0]['query'] === 'user=1', 'path and query');
check(str_starts_with($events[0]['peer'], '127.0.0.1:'), 'peer');
check(in_array(['upgrade', 'websocket'], $events[0]['headers'], true), 'headers');
check($events[0]['subprotocols'] === '', 'no subprotocols offered');
$conn = $events[0]['conn'];

// Built-in commands are handled in Rust; other messages come to PHP.
$client->send('{"cmd":"add_group","group_id":"g"}');
$client->send('hello from php');
$events = $server->poll(5000);
check(count($events) === 1 && $events[0]['type'] === 'message', 'message event');
check($events[0]['data'] === 'hello from php' && $events[0]['binary'] === false, 'message payload');
check($server->groupSize('g') === 1, 'the built-in add_group joined');
check($server->groups() === ['g'], 'groups');
check($server->connectionCount() === 1, 'connection count');

$server->sendText($conn, 'reply');
check($client->recv() === [1, 'reply'], 'send_text arrives');
$server->sendBinary($conn, "\x00\x01\xff");
check($client->recv() === [2, "\x00\x01\xff"], 'send_binary arrives');
check($server->join($conn, 'h') === true && $server->join($conn, 'h') === false, 'join twice');
check($server->sendToGroup('h', 'to h') === 1, 'send_to_group count');
check($client->recv() === [1, 'to h'], 'send_to_group arrives');
check($server->sendToGroup('h', 'nobody', [$conn]) === 0, 'excluded');
check($server->broadcast('to all') === 1, 'broadcast count');
check($client->recv() === [1, 'to all'], 'broadcast arrives');
check($server->leave($conn, 'h') === true, 'leave');

// Errors are exceptions carrying the result code.
check_throws(7, fn () => $server->sendText(999999, 'x'), 'unknown connection');
check_throws(2, fn () => $server->sendText($conn, "\xff\xfe"), 'invalid UTF-8');
check_throws(10, fn () => $server->close($conn, 1005), 'invalid close code');
check_throws(11, fn () => $server->publish('news', 'not json'), 'channel data must be JSON');

// Channel events through poll.
$server->subscribe('news');
$channel = null;
for ($i = 0; $i < 50 && $channel === null; $i++) {
    $server->publish('news', '{"n":1}');
    foreach ($server->poll(100) as $event) {
        $channel ??= $event['type'] === 'channel' ? $event : null;
    }
}
check($channel !== null && $channel['channel'] === 'news' && $channel['data'] === '{"n":1}', 'channel event');
$server->unsubscribe('news');

// The host closes the client with its own code.
$server->close($conn, 4001, 'bye');
[$opcode, $payload] = $client->recv();
check($opcode === 8 && unpack('n', $payload)[1] === 4001, 'close frame with the code');
$close = null;
for ($i = 0; $i < 50 && $close === null; $i++) {
    foreach ($server->poll(100) as $event) {
        $close ??= $event['type'] === 'close' ? $event : null;
    }
}
check($close !== null && $close['conn'] === $conn && $close['code'] === 4001, 'close event');

// Stop twice is harmless; afterwards poll ends and actions fail.
$server->stop();
$server->stop();
while (($events = $server->poll(1000)) !== null) {
}
check(true, 'poll returns null once stopped');
check_throws(Server::ERR_STOPPED, fn () => $server->groupSize('g'), 'actions after stop');
$server->free();
check_throws(Server::ERR_STOPPED, fn () => $server->groupSize('g'), 'actions after free');

echo "test_wrapper.php: $checks checks passed\n";
