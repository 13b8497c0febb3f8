<?php
/**
 * The seed's Channel protocol from PHP itself, against `groupcast channel`:
 * a client built as walkor/channel's Client.php builds its frames
 * (serialize(), pack('N', 4 + strlen($body)) . $body, stream_socket_client),
 * since Workerman cannot be installed here. Subscribe, publish (the
 * publisher hears its own event), the issue's exact bytes, publishLoop,
 * watch/enqueue/reserve, ping, a trailing "\n", integer-string keys, a
 * refused object, PHP and JSON subscribers on one channel; then a groupcast
 * node in workerman mode beside a PHP "worker" speaking the seed's event
 * layout and delivering to its own fake members.
 *
 *   GROUPCAST_BIN=target/debug/groupcast php tests/php/test_channel.php
 */

declare(strict_types=1);

const ARRIVES = 5.0;
const QUIET = 0.3;

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

/** Starts `groupcast ARGS`; returns [process, pipes, the listening line's key=value pairs]. */
function start(array $args): array
{
    $bin = getenv('GROUPCAST_BIN') ?: dirname(__DIR__, 2) . '/target/debug/groupcast';
    return start_command(array_merge([$bin], $args));
}

/** Starts `command`; as start(). */
function start_command(array $command): array
{
    $bin = $command[0];
    $spec = [0 => ['pipe', 'r'], 1 => ['pipe', 'w'], 2 => ['file', '/dev/null', 'w']];
    $proc = proc_open($command, $spec, $pipes);
    check(is_resource($proc), "start $bin");
    $read = [$pipes[1]];
    $none = null;
    check(stream_select($read, $none, $none, 10) === 1, 'groupcast prints its listening line');
    $line = trim((string)fgets($pipes[1]));
    $addresses = [];
    foreach (explode(' ', $line) as $word) {
        if (str_contains($word, '=')) {
            [$k, $v] = explode('=', $word, 2);
            $addresses[$k] = $v;
        }
    }
    return [$proc, $pipes, $addresses];
}

function stop(array $started): void
{
    [$proc, $pipes] = $started;
    proc_terminate($proc, 15);
    foreach ($pipes as $pipe) {
        fclose($pipe);
    }
    proc_close($proc);
}

/** A channel connection, framed as Channel\Client frames it. */
final class Conn
{
    /** @var resource */
    public $socket;
    private string $buffer = '';

    /** @param bool $json speaks the JSON dialect (a groupcast node's) */
    public function __construct(string $addr, private bool $json = false)
    {
        $socket = stream_socket_client("tcp://$addr", $code, $message, 5);
        check($socket !== false, "connect to $addr: $message");
        $this->socket = $socket;
    }

    /** Sends serialize($data), as Client::send() does. */
    public function send(array $data): void
    {
        $this->raw(serialize($data));
    }

    /** Sends one frame with this body. */
    public function raw(string $body): void
    {
        fwrite($this->socket, pack('N', 4 + strlen($body)) . $body);
    }

    /** The next frame's body, or null when none comes within $timeout (false on close). */
    public function frame(float $timeout = ARRIVES): string|null|false
    {
        $deadline = microtime(true) + $timeout;
        while (true) {
            if (strlen($this->buffer) >= 4) {
                $len = unpack('N', substr($this->buffer, 0, 4))[1];
                if (strlen($this->buffer) >= $len) {
                    $body = substr($this->buffer, 4, $len - 4);
                    $this->buffer = substr($this->buffer, $len);
                    return $body;
                }
            }
            $left = $deadline - microtime(true);
            if ($left <= 0) {
                return null;
            }
            $read = [$this->socket];
            $none = null;
            if (stream_select($read, $none, $none, 0, (int)($left * 1e6)) !== 1) {
                return null;
            }
            $chunk = fread($this->socket, 65536);
            if ($chunk === '' || $chunk === false) {
                return false;
            }
            $this->buffer .= $chunk;
        }
    }

    /** The next message, unserialized as Client::onRemoteMessage() does (no objects). */
    public function recv(): array
    {
        $body = $this->frame();
        check(is_string($body), "a frame arrives (" . (new \Exception())->getTraceAsString() . ")");
        $data = unserialize($body, ['allowed_classes' => false]);
        check(is_array($data), "an array: $body");
        return $data;
    }

    /**
     * Returns once the server has handled every frame sent so far on this
     * connection (it handles one connection's frames in order, and nothing
     * in the protocol answers a subscribe): publishes to a channel of its
     * own and waits for its own event, which must be the next frame.
     */
    public function sync(): void
    {
        static $n = 0;
        $channel = 'sync-' . ++$n;
        $frames = [
            ['type' => 'subscribe', 'channels' => [$channel]],
            ['type' => 'publish', 'channels' => [$channel], 'data' => 'sync'],
            ['type' => 'unsubscribe', 'channels' => [$channel]],
        ];
        foreach ($frames as $frame) {
            $this->raw($this->json ? json_encode($frame) : serialize($frame));
        }
        $body = $this->frame();
        check(is_string($body), "the sync event on $channel arrives");
        $event = $this->json ? json_decode($body, true) : unserialize($body, ['allowed_classes' => false]);
        check(is_array($event) && $event['channel'] === $channel, "the next frame is the sync event: $body");
    }

    public function expectNothing(): void
    {
        $body = $this->frame(QUIET);
        check($body === null, 'nothing arrives, got ' . var_export($body, true));
    }

    public function expectClosed(): void
    {
        check($this->frame() === false, 'the server closed the connection');
    }
}

$channel = start(['channel', '--listen', '127.0.0.1:0']);
$addr = $channel[2]['channel'];

// Subscribe and publish: every subscriber, the publisher included.
$a = new Conn($addr);
$b = new Conn($addr);
$a->send(['type' => 'subscribe', 'channels' => ['news']]);
$b->send(['type' => 'subscribe', 'channels' => ['news']]);
$b->sync();
$a->raw(''); // a ping, as Client::ping() sends
$a->send(['type' => 'publish', 'channels' => ['news'], 'data' => ['x' => [1, 2.5, true, null, "\xff"]]]);
foreach ([$a, $b] as $who) {
    $event = $who->recv();
    check($event === ['type' => 'event', 'channel' => 'news', 'data' => ['x' => [1, 2.5, true, null, "\xff"]]], 'publish: ' . json_encode($event));
}

// The issue's bytes: a 149-byte publish, a 136-byte event.
$body = serialize(['type' => 'publish', 'channels' => ['send_to_group'], 'data' => ['group_id' => '123', 'message' => 'hello']]);
check(strlen($body) + 4 === 149, 'publish is 149 bytes');
$a->send(['type' => 'subscribe', 'channels' => ['send_to_group']]);
$a->raw($body);
$event = $a->frame();
check($event === serialize(['type' => 'event', 'channel' => 'send_to_group', 'data' => ['group_id' => '123', 'message' => 'hello']]), "event bytes: $event");
check(strlen($event) + 4 === 0x88, 'event is 136 bytes');

// A trailing "\n" (servers up to 1.2.1 append one) is accepted.
$b->raw(serialize(['type' => 'publish', 'channels' => ['news'], 'data' => 'nl']) . "\n");
check($a->recv()['data'] === 'nl', 'a body with a trailing newline');
check(!str_ends_with((string)$b->frame(), "\n"), 'no newline is ever sent');

// Integer-string keys: channel 5 and "5" are the same; "7" and 7 too.
$c = new Conn($addr);
$c->send(['type' => 'subscribe', 'channels' => [5]]);
$c->raw('a:2:{s:4:"type";s:7:"publish";s:8:"channels";a:1:{s:1:"0";s:1:"5";}}'); // no data: refused
$c->expectClosed();
$c = new Conn($addr);
$c->send(['type' => 'subscribe', 'channels' => [5]]);
$json = new Conn($addr, json: true);
$json->raw('{"type":"subscribe","channels":["5"]}');
$c->sync();
$json->sync();
$b->raw('a:3:{s:4:"type";s:7:"publish";s:8:"channels";a:1:{s:1:"0";s:1:"5";}s:4:"data";a:1:{s:1:"7";s:1:"k";}}');
$event = $c->recv();
check($event['channel'] == 5 && $event['data'] === [7 => 'k'], 'int-string keys: ' . json_encode($event));
// Mixed dialects on one channel: the JSON subscriber gets JSON.
check($json->frame() === '{"type":"event","channel":"5","data":{"7":"k"}}', 'the JSON subscriber');
$json->raw('{"type":"publish","channels":["5"],"data":{"from":"json","n":[1,2]}}');
check($c->recv()['data'] === ['from' => 'json', 'n' => [1, 2]], 'a JSON publish reaches PHP as an array');
$json->frame();

// publishLoop: one subscriber each, in rotation.
$loop = [];
for ($i = 0; $i < 3; $i++) {
    $loop[$i] = new Conn($addr);
    $loop[$i]->send(['type' => 'subscribe', 'channels' => ['work']]);
    $loop[$i]->sync();
}
for ($i = 0; $i < 6; $i++) {
    $b->send(['type' => 'publishLoop', 'channels' => ['work'], 'data' => $i]);
}
$got = [];
foreach ($loop as $conn) {
    $mine = [$conn->recv()['data'], $conn->recv()['data']];
    $conn->expectNothing();
    $got = array_merge($got, $mine);
}
sort($got);
check($got === [0, 1, 2, 3, 4, 5], 'publishLoop delivers each message once: ' . json_encode($got));

// Queues: watch, enqueue, reserve (Client::watch reserves, and again after each item).
$b->send(['type' => 'enqueue', 'channels' => ['jobs'], 'data' => 'first']);
$b->send(['type' => 'enqueue', 'channels' => ['jobs'], 'data' => 'second']);
$w1 = new Conn($addr);
$w2 = new Conn($addr);
$w1->send(['type' => 'watch', 'channels' => ['jobs']]);
$w2->send(['type' => 'watch', 'channels' => ['jobs']]);
$w1->send(['type' => 'reserve']);
$item = $w1->recv();
check($item === ['type' => 'queue', 'channel' => 'jobs', 'data' => 'first'], 'queue item: ' . json_encode($item));
$w1->expectNothing();
$w2->send(['type' => 'reserve']);
check($w2->recv()['data'] === 'second', 'FIFO, one item per reserve');
$w1->send(['type' => 'reserve']);
$b->send(['type' => 'enqueue', 'channels' => ['jobs'], 'data' => 'third']);
check($w1->recv()['data'] === 'third', 'an item reaches the watcher waiting for it');
$w2->expectNothing();
$w1->send(['type' => 'unwatch', 'channels' => ['jobs']]);

// PHP's own serialize() of many values: the server decodes each to the
// value PHP's json_encode() gives, and a JSON publish of that reaches PHP as
// json_decode($text, true) gives it.
$deep = 'leaf';
for ($i = 0; $i < 30; $i++) {
    $deep = [$deep, "level $i" => $i];
}
$cases = [
    0, -1, PHP_INT_MAX, PHP_INT_MIN, 0.1, -1.5, 1e100, 1.5e-7, 123456789.125, -2.5e-300,
    true, false, null, '', 'hello', 'é ü 漢字 🎉', "quote \" ; } { s:1:\"x\"; a:1:{", "line\nbreak\t\0nul",
    str_repeat('x', 100000), [], [1, 2, 3], ['a' => 1, 'b' => [true, null]], [5 => 'five', 9 => 'nine'],
    [-3 => 'neg', '007' => 'str key', '7' => 'int key', 'k' => ['nested' => ['deeper' => [1.25]]]],
    [1 => 'starts at one'], ['0' => 'zero as string', '1' => 'one'], $deep,
];
$php_sub = new Conn($addr);
$json_sub = new Conn($addr, json: true);
$php_sub->send(['type' => 'subscribe', 'channels' => ['cases']]);
$json_sub->raw('{"type":"subscribe","channels":["cases"]}');
$php_sub->sync();
$json_sub->sync();
foreach ($cases as $i => $value) {
    $b->send(['type' => 'publish', 'channels' => ['cases'], 'data' => $value]);
    check($php_sub->recv()['data'] === $value, "case $i reaches PHP as sent");
    $expected = json_decode(json_encode($value), true);
    $event = json_decode((string)$json_sub->frame(), true);
    check($event !== null && $event['data'] === $expected, "case $i as JSON: " . substr(json_encode($event), 0, 200));
    $json_sub->raw(json_encode(['type' => 'publish', 'channels' => ['cases'], 'data' => $value]));
    $back = $php_sub->recv()["data"];
    check($back === $expected, "case $i from JSON: " . substr(json_encode($back), 0, 200));
    $json_sub->frame();
}

// A serialized object is refused: that connection closes, the others go on.
$evil = new Conn($addr);
$evil->send(['type' => 'publish', 'channels' => ['news'], 'data' => new ArrayObject([1])]);
$evil->expectClosed();
$a->expectNothing();
$b->send(['type' => 'publish', 'channels' => ['news'], 'data' => 'still here']);
check($a->recv()['data'] === 'still here', 'the others are still served');

// A groupcast node in workerman mode beside a PHP worker of the seed.
$node = start(['serve', '--listen', '127.0.0.1:0', '--channel', $addr, '--channel-protocol', 'workerman', '--no-demo']);
$ws = websocket($node[2]['websocket']);
$worker = new Conn($addr);
$worker->send(['type' => 'subscribe', 'channels' => ['send_to_group', 'probe']]);
$worker->send(['type' => 'publish', 'channels' => ['probe'], 'data' => 'subscribed']);
check($worker->recv()['data'] === 'subscribed', 'the worker is subscribed');
$members = []; // the worker's own fake members of group 123: what each received
$deliver = function (array $event) use (&$members): void {
    // The seed's handler: $event_data['group_id'], $event_data['message'].
    check($event['type'] === 'event' && $event['channel'] === 'send_to_group', 'a send_to_group event');
    if ((string)$event['data']['group_id'] === '123') {
        $members[] = $event['data']['message'];
    }
};
ws_send($ws, '{"cmd":"add_group","group_id":"123"}');
ws_send($ws, '{"cmd":"send_to_group","group_id":"123","message":"from a node"}');
check(ws_recv($ws) === 'from a node', 'the node delivers to its member');
// The node subscribed before it published (same connection): once the
// worker has the node's message, the node hears send_to_group too.
$deliver($worker->recv());
// The seed's worker publishes, and delivers on its own echo.
$worker->send(['type' => 'publish', 'channels' => ['send_to_group'], 'data' => ['group_id' => 123, 'message' => 'from PHP']]);
$deliver($worker->recv());
check(ws_recv($ws) === 'from PHP', 'the node delivers the worker\'s message');
check($members === ['from a node', 'from PHP'], 'each member once: ' . json_encode($members));
check(ws_recv($ws, QUIET) === null, 'nothing twice on the node');
$worker->expectNothing();
stop($node);
stop($channel);

// The same against a stand-in for the PHP Channel\Server (which echoes a
// node's publish back to it, ignores exclude_self, and ends events with
// "\n"): each member still gets each message once. The stand-in is the
// channel benchmark's PHP baseline, written after walkor/channel's Server.php.
$php_server = start_command([PHP_BINARY, dirname(__DIR__, 2) . '/benches/baselines/php/channel_server.php']);
$addr = $php_server[2]['channel'];
$node = start(['serve', '--listen', '127.0.0.1:0', '--channel', $addr, '--channel-protocol', 'workerman', '--no-demo']);
$ws = websocket($node[2]['websocket']);
$worker = new Conn($addr);
$worker->send(['type' => 'subscribe', 'channels' => ['send_to_group', 'probe']]);
$worker->send(['type' => 'publish', 'channels' => ['probe'], 'data' => 'subscribed']);
check($worker->recv()['data'] === 'subscribed', 'the worker is subscribed (PHP server)');
$members = [];
ws_send($ws, '{"cmd":"add_group","group_id":"123"}');
ws_send($ws, '{"cmd":"send_to_group","group_id":"123","message":"from a node"}');
check(ws_recv($ws) === 'from a node', 'the node delivers to its member (PHP server)');
$event = $worker->frame();
check(is_string($event) && str_ends_with($event, "}\n"), 'the PHP server ends events with a newline');
$deliver(unserialize($event, ['allowed_classes' => false]));
$worker->send(['type' => 'publish', 'channels' => ['send_to_group'], 'data' => ['group_id' => '123', 'message' => 'from PHP']]);
$deliver($worker->recv());
check(ws_recv($ws) === 'from PHP', 'the node delivers the worker\'s message (PHP server)');
check($members === ['from a node', 'from PHP'], 'each PHP member once (PHP server): ' . json_encode($members));
check(ws_recv($ws, QUIET) === null, 'the node ignored its own echo');
stop($node);
stop($php_server);
echo "test_channel.php: $checks checks passed\n";

/** A websocket client: the handshake, then masked text frames. */
function websocket(string $addr)
{
    $socket = stream_socket_client("tcp://$addr", $errno, $error, 5);
    check($socket !== false, "websocket connect: $error");
    $key = base64_encode(random_bytes(16));
    fwrite($socket, "GET / HTTP/1.1\r\nHost: $addr\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        . "Sec-WebSocket-Key: $key\r\nSec-WebSocket-Version: 13\r\n\r\n");
    stream_set_timeout($socket, 5);
    $head = '';
    while (!str_contains($head, "\r\n\r\n")) {
        $byte = fread($socket, 1);
        check($byte !== '' && $byte !== false, 'handshake answer');
        $head .= $byte;
    }
    check(str_starts_with($head, 'HTTP/1.1 101'), "upgrade: $head");
    return $socket;
}

function ws_send($socket, string $text): void
{
    $mask = random_bytes(4);
    $len = strlen($text);
    $head = chr(0x81) . ($len < 126 ? chr(0x80 | $len) : chr(0x80 | 126) . pack('n', $len));
    $masked = '';
    for ($i = 0; $i < $len; $i++) {
        $masked .= $text[$i] ^ $mask[$i % 4];
    }
    fwrite($socket, $head . $mask . $masked);
}

/** The next text frame, or null when none comes within $timeout (pings are skipped). */
function ws_recv($socket, float $timeout = ARRIVES): ?string
{
    $deadline = microtime(true) + $timeout;
    while (true) {
        $left = $deadline - microtime(true);
        $read = [$socket];
        $none = null;
        if ($left <= 0 || stream_select($read, $none, $none, 0, (int)($left * 1e6)) !== 1) {
            return null;
        }
        $head = read_exactly($socket, 2);
        $len = ord($head[1]) & 0x7f;
        if ($len === 126) {
            $len = unpack('n', read_exactly($socket, 2))[1];
        } elseif ($len === 127) {
            $len = unpack('J', read_exactly($socket, 8))[1];
        }
        $payload = $len > 0 ? read_exactly($socket, $len) : '';
        if ((ord($head[0]) & 0x0f) === 1) {
            return $payload;
        }
    }
}

function read_exactly($socket, int $n): string
{
    $out = '';
    while (strlen($out) < $n) {
        $chunk = fread($socket, $n - strlen($out));
        check($chunk !== '' && $chunk !== false, 'websocket read');
        $out .= $chunk;
    }
    return $out;
}
