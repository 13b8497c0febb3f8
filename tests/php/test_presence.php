<?php
/**
 * Users and presence from PHP, on two nodes sharing a channel server:
 * bindUid / sendToUid reach a uid's devices on both nodes once each,
 * presence() and clusterStats() agree from both nodes, an action reaches a
 * connection held by the other node, ungroup() empties the group on both,
 * and bad uids throw Result::ERR_INVALID_UID.
 */

declare(strict_types=1);

require dirname(__DIR__, 2) . '/php/Groupcast.php';

use Groupcast\GroupcastException;
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

function eventually(callable $done, float $seconds = 5): bool
{
    $until = microtime(true) + $seconds;
    do {
        if ($done()) {
            return true;
        }
        usleep(20_000);
    } while (microtime(true) < $until);
    return false;
}

/** A minimal websocket client: handshake, masked text frames, unmasked reads. */
final class Client
{
    /** @var resource */
    public $socket;

    public function __construct(string $addr)
    {
        $this->socket = stream_socket_client("tcp://$addr", $errno, $error, 5);
        check($this->socket !== false, "connect: $error");
        stream_set_timeout($this->socket, 5);
        fwrite($this->socket, "GET / HTTP/1.1\r\nHost: $addr\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            . "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
        $head = '';
        while (!str_ends_with($head, "\r\n\r\n")) {
            $byte = fread($this->socket, 1);
            check($byte !== false && $byte !== '', 'handshake response');
            $head .= $byte;
        }
        check(str_starts_with($head, 'HTTP/1.1 101'), 'handshake accepted');
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

    public function recvText(): string
    {
        [$b0, $b1] = array_values(unpack('C2', $this->read(2)));
        $n = $b1 & 0x7f;
        if ($n === 126) {
            $n = unpack('n', $this->read(2))[1];
        }
        check(($b0 & 0x0f) === 1, 'a text frame');
        return $n > 0 ? $this->read($n) : '';
    }
}

/** Connects a client to $server and returns it with its connection id. */
function open(Server $server): array
{
    $client = new Client($server->websocketAddress());
    $events = $server->poll(5000) ?? [];
    check(count($events) === 1 && $events[0]['type'] === 'connect', 'connect event');
    return [$client, $events[0]['conn']];
}

$a = Server::start([
    'listen' => '127.0.0.1:0', 'channel_listen' => '127.0.0.1:0',
    'events' => Server::EVENTS_CONNECT, 'presence_lease' => 60,
]);
$b = Server::start([
    'listen' => '127.0.0.1:0', 'channel_listen' => null, 'channel' => $a->channelAddress(),
    'events' => Server::EVENTS_CONNECT, 'presence' => true, 'presence_command' => true,
]);
check(eventually(fn () => $a->clusterStats()['nodes'] === 2 && $b->clusterStats()['nodes'] === 2), 'nodes meet');

[$phone, $phoneId] = open($a);
[$laptop, $laptopId] = open($b);
[$other, $otherId] = open($b);
$a->bindUid($phoneId, 'bob');
$b->bindUid($laptopId, 'bob');
$b->bindUid($otherId, 'carol');
check($a->uidOf($phoneId) === 'bob', 'uidOf');
check(eventually(fn () => $a->isUidOnline('carol')), 'carol is seen from node a');
check($a->sendToUid('bob', 'for bob') === 1, 'one local delivery');
check($phone->recvText() === 'for bob', 'phone got it');
check($laptop->recvText() === 'for bob', 'laptop got it');
$b->sendToUid(['bob', 'carol', 'bob'], 'all');
foreach ([$phone, $laptop, $other] as $client) {
    check($client->recvText() === 'all', 'each device once');
}

$a->join($phoneId, 'room');
$b->join($laptopId, 'room');
$b->join($otherId, 'room');
check(eventually(fn () => $a->presence('room')['connections'] === 3 && $b->presence('room')['connections'] === 3),
    'both nodes count 3');
check($a->presence('room') === ['connections' => 3, 'users' => 2, 'uids' => ['bob', 'carol'], 'truncated' => false],
    'presence from node a');
check($b->presence('room', 1)['truncated'] === true, 'capped list');
check($b->clusterStats() === ['nodes' => 2, 'connections' => 3, 'users' => 2, 'groups' => 1], 'cluster stats');

$a->sendText($otherId, 'across');
check($other->recvText() === 'across', 'an action on the other node');

check($a->ungroup('room') === 1, 'ungroup: one local member');
check(eventually(fn () => $b->groupSize('room') === 0), 'node b emptied the room');

foreach (['', str_repeat('x', 257)] as $bad) {
    try {
        $a->bindUid($phoneId, $bad);
        check(false, 'a bad uid is refused');
    } catch (GroupcastException $e) {
        check($e->getCode() === Result::ERR_INVALID_UID, "code {$e->getCode()}: {$e->getMessage()}");
        check(str_contains($e->getMessage(), 'uid'), $e->getMessage());
    }
}
$a->unbindUid($phoneId);
check($a->uidOf($phoneId) === null, 'unbound');

$b->stop();
$a->stop();
echo "test_presence.php: $checks checks passed\n";
