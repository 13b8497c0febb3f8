<?php
/**
 * The same publish load through `groupcast channel` in its two dialects,
 * JSON bodies (groupcast's) and PHP serialize() bodies (the seed's
 * walkor/channel), and through a PHP channel server
 * (benches/baselines/php/channel_server.php: what walkor/channel's
 * Server.php does per message, on PHP streams; Workerman itself cannot be
 * installed here), driven by one PHP client process built on serialize() /
 * json_encode() and the Frame framing, as Channel\Client frames them.
 *
 * Per round and run: SUBS subscribers of `send_to_group`, one publisher
 * sending COUNT publishes of the seed's event data, at most WINDOW of them
 * not yet received by every subscriber (so neither server is asked to
 * buffer without bound); the round ends when every subscriber has every
 * event. Reports publishes/s, deliveries/s and the server's CPU per
 * delivery (utime+stime from /proc/<pid>/stat), and the ratios of each
 * round, the runs alternating in the same rounds.
 *
 *   php benches/channel_dialects.php [GROUPCAST_BIN] [--count N] [--subs N] [--rounds N] [--window N]
 */

declare(strict_types=1);

$bin = 'target/release/groupcast';
$opts = ['count' => 50000, 'subs' => 4, 'rounds' => 3, 'window' => 2000];
for ($i = 1; $i < $argc; $i++) {
    if (str_starts_with($argv[$i], '--')) {
        $opts[substr($argv[$i], 2)] = (int)($argv[++$i] ?? 0);
    } else {
        $bin = $argv[$i];
    }
}
['count' => $count, 'subs' => $subs, 'rounds' => $rounds, 'window' => $window] = $opts;

function fail(string $why): never
{
    fwrite(STDERR, "channel_dialects: $why\n");
    exit(1);
}

/** Starts a server that prints "channel=ADDR"; returns [process, address, pid]. */
function start(array $command): array
{
    $proc = proc_open($command, [1 => ['pipe', 'w'], 2 => ['file', '/dev/null', 'w']], $pipes);
    $line = (string)fgets($pipes[1]);
    preg_match('/channel=(\S+)/', $line, $m) || fail("no address in: $line");
    return [$proc, $m[1], proc_get_status($proc)['pid']];
}

$servers = [
    'groupcast' => start([$bin, 'channel', '--listen', '127.0.0.1:0']),
    'php-server' => start([PHP_BINARY, __DIR__ . '/baselines/php/channel_server.php']),
];
// Each run: [label, server, dialect].
$runs = [
    ['groupcast JSON', 'groupcast', 'json'],
    ['groupcast PHP', 'groupcast', 'php'],
    ['PHP server PHP', 'php-server', 'php'],
];

function cpu_seconds(int $pid): float
{
    $stat = file_get_contents("/proc/$pid/stat");
    $fields = explode(' ', substr($stat, strrpos($stat, ')') + 2));
    return ((int)$fields[11] + (int)$fields[12]) / 100.0; // utime + stime, in ticks of 1/100 s
}

function connect(string $addr)
{
    $s = stream_socket_client("tcp://$addr", $code, $message, 5);
    $s || fail("connect: $message");
    stream_set_write_buffer($s, 0);
    return $s;
}

function frame(string $body): string
{
    return pack('N', 4 + strlen($body)) . $body;
}

/** Reads what is there, counts whole frames; returns [frames, rest]. */
function drain($socket, string $rest): array
{
    $chunk = fread($socket, 1 << 20);
    if ($chunk === false || $chunk === '') {
        return [0, $rest];
    }
    $rest .= $chunk;
    $frames = 0;
    $at = 0;
    $len = strlen($rest);
    while ($len - $at >= 4) {
        $size = unpack('N', $rest, $at)[1];
        if ($len - $at < $size) {
            break;
        }
        $at += $size;
        $frames++;
    }
    return [$frames, substr($rest, $at)];
}

function round_of(string $dialect, string $addr, int $pid, int $count, int $subs, int $window): array
{
    $encode = $dialect === 'php' ? 'serialize' : fn ($v) => json_encode($v);
    $readers = [];
    for ($i = 0; $i < $subs; $i++) {
        $s = connect($addr);
        // A reader's subscription is in once its own private probe is back.
        fwrite($s, frame($encode(['type' => 'subscribe', 'channels' => ['send_to_group', "sync-$i"]])));
        fwrite($s, frame($encode(['type' => 'publish', 'channels' => ["sync-$i"], 'data' => 'probe'])));
        drain($s, '');
        stream_set_blocking($s, false);
        $readers[] = $s;
    }
    $publisher = connect($addr);
    $body = frame($encode([
        'type' => 'publish',
        'channels' => ['send_to_group'],
        'data' => ['group_id' => '123', 'message' => str_repeat('m', 64)],
    ]));
    $batch = str_repeat($body, 100);
    $got = array_fill(0, $subs, 0);
    $rest = array_fill(0, $subs, '');
    $cpu0 = cpu_seconds($pid);
    $t0 = hrtime(true);
    $sent = 0;
    while (array_sum($got) < $count * $subs) {
        $open = $sent < $count && $sent - min($got) + 100 <= $window;
        if ($open) {
            fwrite($publisher, $batch);
            $sent += 100;
        }
        $read = $readers;
        $none = null;
        if (stream_select($read, $none, $none, $open ? 0 : 5) === 0 && !$open) {
            fail("$dialect: stalled at " . array_sum($got) . " of " . $count * $subs);
        }
        foreach ($read as $r) {
            $i = array_search($r, $readers, true);
            [$n, $rest[$i]] = drain($r, $rest[$i]);
            $got[$i] += $n;
        }
    }
    $seconds = (hrtime(true) - $t0) / 1e9;
    $cpu = cpu_seconds($pid) - $cpu0;
    foreach ([...$readers, $publisher] as $s) {
        fclose($s);
    }
    $deliveries = $count * $subs;
    return [
        'publishes_per_s' => $count / $seconds,
        'deliveries_per_s' => $deliveries / $seconds,
        'server_us_per_delivery' => $cpu * 1e6 / $deliveries,
        'publish_bytes' => strlen($body),
    ];
}

printf("%d publishes x %d subscribers per run, window %d, %d rounds\n", $count, $subs, $window, $rounds);
printf("%-5s %-15s %14s %16s %22s %12s\n", 'round', 'run', 'publishes/s', 'deliveries/s', 'server us/delivery', 'frame bytes');
$ratios = [];
for ($round = 1; $round <= $rounds; $round++) {
    // Rotate which goes first, so a drift of the machine's load does not favour one.
    $order = array_merge(array_slice($runs, ($round - 1) % 3), array_slice($runs, 0, ($round - 1) % 3));
    $results = [];
    foreach ($order as [$label, $server, $dialect]) {
        [, $addr, $pid] = $servers[$server];
        $results[$label] = $r = round_of($dialect, $addr, $pid, $count, $subs, $window);
        printf("%-5d %-15s %14s %16s %22.2f %12d\n", $round, $label, number_format($r['publishes_per_s']),
            number_format($r['deliveries_per_s']), $r['server_us_per_delivery'], $r['publish_bytes']);
    }
    $ratios[] = $results;
}
$ratio = fn (array $a, array $b, string $key) => $a[$key] / max($b[$key], 1e-9);
foreach ($ratios as $i => $r) {
    [$json, $php, $baseline] = [$r['groupcast JSON'], $r['groupcast PHP'], $r['PHP server PHP']];
    printf("round %d: groupcast PHP/JSON: deliveries/s %.2fx, CPU per delivery %.2fx;"
        . " groupcast/PHP server (PHP dialect): deliveries/s %.2fx, CPU per delivery %.2fx\n", $i + 1,
        $ratio($php, $json, 'deliveries_per_s'), $ratio($php, $json, 'server_us_per_delivery'),
        $ratio($php, $baseline, 'deliveries_per_s'), $ratio($php, $baseline, 'server_us_per_delivery'));
}
foreach ($servers as [$proc]) {
    proc_terminate($proc, 15);
    proc_close($proc);
}
