<?php
/**
 * The PHP wrapper over FFI: the declarations load, the version is checked,
 * a websocket round trip goes through poll, errors become exceptions with
 * the result code, stop is idempotent. Then the options: every C setting is
 * an option (checked against the header), unknown names and wrong types are
 * refused naming them, and each option takes effect where a client can see
 * it; stats() and health(); the Result constants are the C values.
 */

declare(strict_types=1);

require dirname(__DIR__, 2) . '/php/Groupcast.php';

use Groupcast\GroupcastException;
use Groupcast\Library;
use Groupcast\Options;
use Groupcast\Result;
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

/** Throws-check: $f must throw a GroupcastException with $code (and $text in its message). */
function check_throws(int $code, callable $f, string $what, string $text = ''): void
{
    try {
        $f();
    } catch (GroupcastException $e) {
        check($e->getCode() === $code, "$what: code {$e->getCode()} ({$e->getMessage()}), expected $code");
        check(str_contains($e->getMessage(), $text), "$what: \"$text\" in \"{$e->getMessage()}\"");
        return;
    }
    check(false, "$what: no exception");
}

/** Opens a websocket handshake with extra headers; returns the socket and the HTTP status. */
function handshake(string $addr, array $headers = []): array
{
    $socket = stream_socket_client("tcp://$addr", $errno, $error, 5);
    check($socket !== false, "connect: $error");
    stream_set_timeout($socket, 5);
    $extra = '';
    foreach ($headers as $name => $value) {
        $extra .= "$name: $value\r\n";
    }
    fwrite($socket, "GET / HTTP/1.1\r\nHost: $addr\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        . "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n$extra\r\n");
    $head = '';
    while (!str_ends_with($head, "\r\n\r\n")) {
        $byte = fread($socket, 1);
        if ($byte === false || $byte === '') {
            break;
        }
        $head .= $byte;
    }
    return [$socket, (int) (explode(' ', $head)[1] ?? 0)];
}

/** A port free a moment ago. */
function free_port(): int
{
    $probe = stream_socket_server('tcp://127.0.0.1:0');
    $port = (int) substr(strrchr(stream_socket_get_name($probe, false), ':'), 1);
    fclose($probe);
    return $port;
}

/** GET $path over plain HTTP: [status, body]. */
function http_get(string $addr, string $path): array
{
    $socket = stream_socket_client("tcp://$addr", $errno, $error, 5);
    check($socket !== false, "connect $addr: $error");
    stream_set_timeout($socket, 5);
    fwrite($socket, "GET $path HTTP/1.1\r\nHost: $addr\r\nConnection: close\r\n\r\n");
    $response = stream_get_contents($socket);
    fclose($socket);
    [$head, $body] = explode("\r\n\r\n", $response, 2) + ['', ''];
    return [(int) (explode(' ', $head)[1] ?? 0), $body];
}

/** Polls until $done(stats, health) holds or $seconds pass; returns whether it did. */
function eventually(Server $server, callable $done, float $seconds = 10): bool
{
    $until = microtime(true) + $seconds;
    do {
        if ($done($server->stats(), $server->health())) {
            return true;
        }
        usleep(50_000);
    } while (microtime(true) < $until);
    return false;
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

    /** A client over a socket that handshake() opened. */
    public static function over($socket): self
    {
        $client = (new \ReflectionClass(self::class))->newInstanceWithoutConstructor();
        $client->socket = $socket;
        return $client;
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

// ---- Options: as complete as the C ABI, checked before they reach it ----

$header = file_get_contents(dirname(__DIR__, 2) . '/include/groupcast.h');
// Every config setter of the header is an option.
preg_match_all('/\bgroupcast_config_(set|add)_(\w+)\(/', $header, $m);
foreach (array_unique($m[2]) as $setter) {
    $option = match ($setter) {
        'limit' => null,
        'allowed_origin' => 'allowed_origins',
        // Pairs of paths: one setter, two options.
        'tls' => 'tls_cert',
        'channel_tls' => 'channel_tls_cert',
        default => $setter,
    };
    check($option === null || isset(Options::KINDS[$option]), "groupcast_config_{$m[1][0]}_$setter has an option");
}
preg_match_all('/GROUPCAST_LIMIT_(\w+) = (\d+)/', $header, $m, PREG_SET_ORDER);
check(count($m) === count(Options::LIMITS), 'one option per groupcast_limit');
foreach ($m as [, $name, $value]) {
    $option = strtolower(preg_replace('/_MS$/', '', $name));
    check((Options::LIMITS[$option] ?? null) === (int) $value, "limit option $option = GROUPCAST_LIMIT_$name");
}
preg_match_all('/GROUPCAST_SLOW_CONSUMER_(\w+) = (\d+)/', $header, $m, PREG_SET_ORDER);
foreach ($m as [, $name, $value]) {
    check((Options::SLOW_CONSUMER[strtolower($name)] ?? null) === (int) $value, "slow_consumer '$name'");
}

// Unknown names and wrong types: refused before the library sees them,
// naming the option (and the closest known name).
check_throws(Result::ERR_INVALID_ARGUMENT, fn () => Server::start(['lisen' => '127.0.0.1:0']),
    'typo', "unknown option 'lisen' (did you mean 'listen'?)");
check_throws(Result::ERR_INVALID_ARGUMENT, fn () => Server::start(['max_conections' => 1, 'zzzzzzzzzz' => 1]),
    'two unknown', "unknown option 'max_conections' (did you mean 'max_connections'?); unknown option 'zzzzzzzzzz'");
check_throws(Result::ERR_INVALID_ARGUMENT, fn () => Server::start(['workers' => '2']),
    'string for an int', "option 'workers' must be a non-negative int, not '2' (string)");
check_throws(Result::ERR_INVALID_ARGUMENT, fn () => Server::start(['max_connections' => -1]),
    'negative', "option 'max_connections' must be a non-negative int");
check_throws(Result::ERR_INVALID_ARGUMENT, fn () => Server::start(['ping_interval' => '5']),
    'string for seconds', "option 'ping_interval' must be a non-negative number of seconds");
check_throws(Result::ERR_INVALID_ARGUMENT, fn () => Server::start(['builtin_commands' => 1]),
    'int for a bool', "option 'builtin_commands' must be a bool");
check_throws(Result::ERR_INVALID_ARGUMENT, fn () => Server::start(['demo_page' => 'yes']),
    'string for a bool', "option 'demo_page' must be a bool");
check_throws(Result::ERR_INVALID_ARGUMENT, fn () => Server::start(['slow_consumer' => 'wait']),
    'unknown policy', "option 'slow_consumer' must be 'close' or 'drop'");
check_throws(Result::ERR_INVALID_ARGUMENT, fn () => Server::start(['allowed_origins' => 'https://a.example']),
    'string for a list', "option 'allowed_origins' must be a list of strings");
check_throws(Result::ERR_INVALID_ARGUMENT, fn () => Server::start(['listen' => 1234]),
    'int for an address', "option 'listen' must be a string");
// A malformed address is refused by the setter, 0 and inconsistent values
// by start, a busy port as a bind error.
check_throws(Result::ERR_INVALID_ARGUMENT, fn () => Server::start(['listen' => '127.0.0.1']),
    'malformed address', 'listen must be HOST:PORT');
check_throws(Result::ERR_INVALID_ARGUMENT, fn () => Server::start(['listen' => '127.0.0.1:0', 'metrics_listen' => 'x']),
    'malformed metrics address', 'metrics_listen must be HOST:PORT');
check_throws(Result::ERR_CONFIG, fn () => Server::start(['listen' => '127.0.0.1:0', 'max_connections' => 0]),
    'zero limit', 'max_connections must be at least 1');
check_throws(Result::ERR_CONFIG, fn () => Server::start(
    ['listen' => '127.0.0.1:0', 'channel_listen' => null, 'ping_interval' => 0.3, 'idle_timeout' => 0.2]
), 'seconds become milliseconds', 'idle_timeout must be at least ping_interval');
$busy = stream_socket_server('tcp://127.0.0.1:0');
$busyAddr = stream_socket_get_name($busy, false);
check_throws(Result::ERR_BIND, fn () => Server::start(['listen' => $busyAddr, 'channel_listen' => null]),
    'busy port', "cannot listen on $busyAddr: Address already in use");
fclose($busy);

// demo_page: GET / on the websocket port answers the page, another path
// 404; without it, 426.
foreach ([[true, 200, 404], [false, 426, 426]] as [$on, $page, $other]) {
    $demo = Server::start(['listen' => '127.0.0.1:0', 'channel_listen' => null, 'demo_page' => $on]);
    [$status, $body] = http_get($demo->websocketAddress(), '/');
    check($status === $page && ($on ? str_contains($body, 'id="send"') : true), "demo_page " . var_export($on, true) . ": GET / $status");
    [$status] = http_get($demo->websocketAddress(), '/other');
    check($status === $other, "demo_page " . var_export($on, true) . ": GET /other $status");
    $demo->stop();
}

// Every option at once, each taking effect where a client can see it.
$metricsAddr = '127.0.0.1:' . free_port();
$hub = Server::start([
    'listen' => '127.0.0.1:0',
    'channel_listen' => '127.0.0.1:0',
    'channel_secret' => 's3cret',
    'metrics_listen' => $metricsAddr,
    'workers' => 1,
    'builtin_commands' => true,
    'events' => Server::EVENTS_CONNECT | Server::EVENTS_CLOSE,
    'queue_capacity' => 1024,
    'max_message_size' => 4096,
    'outbound_queue_bytes' => 4096,
    'max_groups_per_connection' => 2,
    'max_group_id_len' => 8,
    'max_connections' => 2,
    'ping_interval' => 0.3,
    'idle_timeout' => 10.5,
    'handshake_timeout' => 0.5,
    'drain_timeout' => 0.2,
    'send_buffer_size' => 4096,
    'slow_consumer' => 'drop',
    'allowed_origins' => ['https://ok.example'],
    'poll_batch' => 16,
]);
$hubAddr = $hub->websocketAddress();

// metrics_listen serves /metrics and /health.
[$status, $body] = http_get($metricsAddr, '/metrics');
check($status === 200 && str_contains($body, 'groupcast_connections'), "GET /metrics: $status");
[$status, $body] = http_get($metricsAddr, '/health');
check($status === 200 && json_decode($body, true)['status'] === 'ok', "GET /health: $status $body");

// handshake_timeout 0.5 s: a silent TCP client is closed soon after.
$silent = stream_socket_client("tcp://$hubAddr");
stream_set_timeout($silent, 5);
$t0 = microtime(true);
check(fread($silent, 1) === '' && microtime(true) - $t0 < 3, 'handshake_timeout closes a silent client');
fclose($silent);

// allowed_origins: another browser origin gets 403; max_connections 2: a
// third client gets 503.
[$s1, $status] = handshake($hubAddr, ['Origin' => 'https://ok.example']);
check($status === 101, "allowed origin: $status");
[$evil, $status] = handshake($hubAddr, ['Origin' => 'https://evil.example']);
check($status === 403, "other origin refused with 403: $status");
[$s2, $status] = handshake($hubAddr);
check($status === 101, "second client: $status");
[$third, $status] = handshake($hubAddr);
check($status === 503, "max_connections refuses the third with 503: $status");
$c1 = Client::over($s1);
$c2 = Client::over($s2);
$conns = [];
for ($i = 0; $i < 50 && count($conns) < 2; $i++) {
    foreach ($hub->poll(100) as $event) {
        if ($event['type'] === 'connect') {
            $conns[] = $event['conn'];
        }
    }
}
check(count($conns) === 2, 'two connect events (events option)');
[$conn1] = $conns;

// ping_interval 0.3 s: an idle client is pinged.
check($c2->recv()[0] === 9, 'ping_interval: a ping arrives');

// max_group_id_len 8 and max_groups_per_connection 2.
check_throws(Result::ERR_INVALID_GROUP, fn () => $hub->join($conn1, '123456789'), 'max_group_id_len');
$hub->join($conn1, 'a');
$hub->join($conn1, 'b');
check_throws(Result::ERR_JOIN, fn () => $hub->join($conn1, 'c'), 'max_groups_per_connection');

// slow_consumer 'drop': a client that does not read loses messages, not
// its connection. (Through a group: a direct send of a message that is
// dropped reports ERR_UNKNOWN_CONNECTION.)
$payload = str_repeat('x', 1000);
for ($i = 0; $i < 3000; $i++) {
    $hub->sendToGroup('a', $payload);
}
check(eventually($hub, fn ($s) => $s['dropped_messages'] > 0), 'slow_consumer drop: messages dropped');
$stats = $hub->stats();
check($stats['slow_consumer_closes'] === 0 && $hub->connectionCount() === 2, 'slow_consumer drop: still connected');

// max_message_size 4096: a larger message closes with 1009.
$c2->send(str_repeat('y', 5000));
$closed = null;
for ($i = 0; $i < 20 && $closed === null; $i++) {
    [$opcode, $data] = $c2->recv();
    $closed = $opcode === 8 ? unpack('n', $data)[1] : null;
}
check($closed === 1009, "max_message_size: closed with $closed");

// stats(): every groupcast_stats field, values after this traffic.
preg_match('/typedef struct groupcast_stats \{(.*?)\}/s', $header, $m);
preg_match_all('/uint64_t (\w+);/', $m[1], $m);
$stats = $hub->stats();
check(array_keys($stats) === $m[1], 'stats() has every groupcast_stats field, in order');
check(count(array_filter($stats, 'is_int')) === count($stats), 'stats() values are ints');
check($stats['connections_opened'] >= 2 && $stats['connections_refused'] >= 2, 'opened and refused counted');
check($stats['messages_out'] >= 3000 - $stats['dropped_messages'] && $stats['bytes_out'] > 0, 'messages_out');
check($stats['groups'] === 2, 'groups a and b');

// health() on a local server.
$health = $hub->health();
check($health['ok'] === true && $health['status'] === 'ok' && is_int($health['connections']), 'health() ok: '
    . json_encode($health));

// channel + channel_secret: a node joins the hub's channel server with the
// secret; with a wrong one it never gets in.
$node = Server::start([
    'listen' => '127.0.0.1:0', 'channel_listen' => null, 'channel' => $hub->channelAddress(),
    'channel_secret' => 's3cret',
]);
check(eventually($node, fn ($s, $h) => $h['ok'] && $s['bus_connected'] === 1), 'channel with the secret: connected');
$intruder = Server::start([
    'listen' => '127.0.0.1:0', 'channel_listen' => null, 'channel' => $hub->channelAddress(),
    'channel_secret' => 'wrong',
]);
check(eventually($intruder, fn ($s, $h) => !$h['ok'] && $s['bus_auth_failures'] > 0), 'wrong secret refused');
check($intruder->health()['status'] === 'unavailable' && isset($intruder->health()['reason']), 'health says why');
check($hub->stats()['channel_refused'] > 0, 'the hub\'s channel server counts the refusal: '
    . json_encode($hub->stats()));
$intruder->free();
$node->free();

// channel_protocol: a workerman-mode node joins the hub's channel server in
// PHP serialize() (sending its secret as a PHP auth body); an unknown name
// is refused by the setter.
$workerman = Server::start([
    'listen' => '127.0.0.1:0', 'channel_listen' => null, 'channel' => $hub->channelAddress(),
    'channel_secret' => 's3cret', 'channel_protocol' => 'workerman',
]);
check(eventually($workerman, fn ($s, $h) => $h['ok'] && $s['bus_connected'] === 1), 'workerman mode: connected');
$workerman->free();
check_throws(Result::ERR_INVALID_ARGUMENT, fn () => Server::start(['listen' => '127.0.0.1:0', 'channel_protocol' => 'php']),
    'channel_protocol php', 'groupcast or workerman');

// bus: a Redis URL (nothing listens there: the server starts, health says
// the bus is down).
$redis = Server::start(['listen' => '127.0.0.1:0', 'channel_listen' => null, 'bus' => 'redis://127.0.0.1:1']);
check(eventually($redis, fn ($s, $h) => !$h['ok'] && $s['bus_connect_attempts'] > 0), 'bus: attempts, not ok');
$redis->free();
check_throws(Result::ERR_CONFIG, fn () => Server::start(['listen' => '127.0.0.1:0', 'bus' => 'redis://127.0.0.1:1']),
    'bus and channel_listen', 'not both');

fclose($evil);
fclose($third);
$hub->stop();
check_throws(Result::ERR_STOPPED, fn () => $hub->stats(), 'stats after stop') ;
$hub->free();

// ---- Constants: every groupcast_result, the C values ----
preg_match_all('/\bGROUPCAST_(OK|ERR_\w+) = (\d+)/', $header, $m, PREG_SET_ORDER);
$fromHeader = [];
foreach ($m as [, $name, $value]) {
    $fromHeader[$name] = (int) $value;
    check($ffi->{"GROUPCAST_$name"} === (int) $value, "GROUPCAST_$name through FFI");
}
check((new ReflectionClass(Result::class))->getConstants() === $fromHeader, 'Result constants are the C values');
preg_match_all('/\bGROUPCAST_EVENTS_(\w+) = (\d+)/', $header, $m, PREG_SET_ORDER);
foreach ($m as [, $name, $value]) {
    check(constant(Server::class . "::EVENTS_$name") === (int) $value, "Server::EVENTS_$name");
}
check(Result::message(Result::ERR_BIND) !== '', 'Result::message');

// The verdict before the upgrade, from PHP: a refusal with a status and a
// body, and an admission with one of the offered subprotocols.
$approving = Server::start([
    'listen' => '127.0.0.1:0',
    'channel_listen' => '',
    'workers' => 1,
    'events' => Server::EVENTS_APPROVE,
]);
$at = $approving->websocketAddress();
/** Sends a handshake, lets the server decide, then reads the HTTP head. */
$decide = function (array $headers, callable $verdict) use ($approving, $at): array {
    $socket = stream_socket_client("tcp://$at", $errno, $error, 5);
    stream_set_timeout($socket, 5);
    $extra = '';
    foreach ($headers as $name => $value) {
        $extra .= "$name: $value\r\n";
    }
    fwrite($socket, "GET /room HTTP/1.1\r\nHost: $at\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        . "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n$extra\r\n");
    $events = $approving->poll(5000);
    check(count($events) === 1 && $events[0]['type'] === 'connect', 'connect before the upgrade: ' . json_encode($events));
    $verdict($events[0]);
    $response = '';
    while (!str_contains($response, "\r\n\r\n") || preg_match('/^HTTP\/1\.1 [45]/', $response) === 1) {
        $chunk = fread($socket, 4096);
        if ($chunk === false || $chunk === '') {
            break;
        }
        $response .= $chunk;
    }
    fclose($socket);
    return [(int) (explode(' ', $response)[1] ?? 0), $response];
};
[$status, $response] = $decide(['Cookie' => 'session=no'], function (array $event) use ($approving): void {
    check(in_array(['Cookie', 'session=no'], $event['headers'], true), 'the cookie, as sent');
    $approving->refuse($event['conn'], 401, 'log in first');
});
check($status === 401 && str_ends_with($response, 'log in first'), "refused with 401: $response");
[$status, $response] = $decide(['Sec-WebSocket-Protocol' => 'chat, superchat'], function (array $event) use ($approving): void {
    check($event['subprotocols'] === 'chat, superchat', 'the offered subprotocols');
    check_throws(Result::ERR_CONFIG, fn () => $approving->admit($event['conn'], 'other'), 'a subprotocol not offered');
    $approving->admit($event['conn'], 'superchat');
});
check($status === 101, "admitted: $response");
check(stripos($response, "Sec-WebSocket-Protocol: superchat\r\n") !== false, 'with the chosen subprotocol');
$approving->free();

// TLS: wss:// with the fixture pair; a plain HTTP request is refused with
// 400 and counted; reloadTls() reads the files again; a key from another
// pair is a start error naming it.
$fixtures = dirname(__DIR__) . '/fixtures/tls';
$secure = Server::start([
    'listen' => '127.0.0.1:0', 'channel_listen' => null,
    'tls_cert' => "$fixtures/ec.crt", 'tls_key' => "$fixtures/ec-sec1.key",
]);
[$status] = http_get($secure->websocketAddress(), '/');
check($status === 400, "plain HTTP to the TLS port: $status");
check(eventually($secure, fn () => $secure->stats()['tls_handshake_failures'] === 1), 'the refusal counted');
$secure->reloadTls();
$context = stream_context_create(['ssl' => ['cafile' => "$fixtures/ec.crt", 'peer_name' => 'localhost']]);
$tls = stream_socket_client('tls://' . $secure->websocketAddress(), $errno, $errstr, 5, STREAM_CLIENT_CONNECT, $context);
check($tls !== false, "a TLS connection trusting the certificate: $errstr");
if ($tls !== false) {
    fwrite($tls, "GET /nothing HTTP/1.1\r\nHost: localhost\r\n\r\n");
    check(str_starts_with((string) fgets($tls), 'HTTP/1.1 426'), 'HTTP over TLS reaches the node');
    fclose($tls);
}
$secure->free();
check_throws(Result::ERR_CONFIG, fn () => Server::start([
    'listen' => '127.0.0.1:0', 'channel_listen' => null,
    'tls_cert' => "$fixtures/ec.crt", 'tls_key' => "$fixtures/rsa-pkcs1.key",
]), 'a key from another pair', 'does not match the certificate');
check_throws(Result::ERR_INVALID_ARGUMENT, fn () => Server::start(['tls_cert' => "$fixtures/ec.crt"]),
    'a certificate without its key', 'go together');
// Group history (issue 17): the options, the offset a send returns, history().
$plain = Server::start(['listen' => '127.0.0.1:0', 'channel_listen' => null]);
check($plain->sendToGroupWithOffset('g', 'x') === [0, null], 'no offset without history');
check_throws(Result::ERR_CONFIG, fn () => $plain->history('g'), 'history() without history', 'history_size');
$plain->free();
check_throws(Result::ERR_CONFIG, fn () => Server::start(['listen' => '127.0.0.1:0', 'history_size' => 0]),
    'history_size 0', 'history_size');
$keeping = Server::start([
    'listen' => '127.0.0.1:0', 'channel_listen' => null,
    'history_size' => 3, 'history_ttl' => 60, 'history_max_bytes' => 1 << 20,
]);
foreach (range(1, 5) as $i) {
    check($keeping->sendToGroupWithOffset('g', "m$i") === [0, $i], "offset $i");
}
[$epoch, $messages] = $keeping->history('g');
check($epoch !== '' && $messages === [[3, 'm3'], [4, 'm4'], [5, 'm5']], 'the last 3 kept: ' . json_encode($messages));
check($keeping->history('g', 4, 10)[1] === [[5, 'm5']], 'history since 4');
check($keeping->history('g', null, 1)[1] === [[3, 'm3']], 'history limit 1');
$keeping->free();

echo "test_wrapper.php: $checks checks passed\n";
