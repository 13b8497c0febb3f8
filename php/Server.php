<?php

declare(strict_types=1);

namespace Groupcast;

/** A groupcast server running in this process. */
final class Server
{
    const EVENTS_CONNECT = 1;
    const EVENTS_APPROVE = 2;
    const EVENTS_MESSAGE = 4;
    const EVENTS_CLOSE = 8;
    const EVENTS_CHANNEL = 16;

    /** Result::ERR_STOPPED, kept for existing callers. */
    const ERR_STOPPED = Result::ERR_STOPPED;

    private \FFI $ffi;
    /** groupcast_server*, null once freed. */
    private ?\FFI\CData $server;
    /** The caller-owned event array poll fills. */
    private \FFI\CData $events;
    private int $capacity;
    private \FFI\CData $count;

    /**
     * Starts a server and returns once it listens. Every setting of the C
     * ABI is an option (defaults in brackets; null leaves the default, and
     * turns the "or null" ones off):
     *
     *   listen             "host:port" of the websocket listener ["0.0.0.0:1234"]
     *   channel_listen     embed a channel server there, or null ["127.0.0.1:2206"]
     *   channel            join the channel server there instead (set channel_listen to null)
     *   bus                Redis URL ("redis://h:p", "redis+cluster://h1:p1,h2:p2") instead of a channel server
     *   channel_secret     the channel server's shared secret, or null
     *   channel_protocol   "groupcast" or "workerman" (the seed's PHP serialize() protocol, to join
     *                      Workerman PHP workers; see docs/workerman.md) ["groupcast"]
     *   metrics_listen     serve GET /metrics and /health there, or null
     *   workers            network threads [one per CPU]
     *   builtin_commands   handle add_group / leave_group / send_to_group in the library [true]
     *   demo_page          answer a plain GET / on the websocket port with the demo page [false]
     *   events             EVENTS_* flags OR-ed: what poll() returns [none]
     *   queue_capacity     events queued for PHP before clients' reads pause [65536]
     *   max_message_size, outbound_queue_bytes, max_groups_per_connection,
     *   max_group_id_len, max_connections, send_buffer_size   ints (see groupcast_limit)
     *   ping_interval, idle_timeout, handshake_timeout, drain_timeout   seconds, int or float
     *   slow_consumer      'close' (1008) or 'drop' (the message, for that client) ['close']
     *   allowed_origins    list of browser origins allowed; others get HTTP 403
     *   poll_batch         events taken per poll() [256]
     *   tls_cert, tls_key  PEM files: serve wss:// (both, or neither); see reloadTls()
     *   channel_tls_cert, channel_tls_key  PEM files: the embedded channel server speaks TLS
     *   channel_ca         PEM CA file: reach the channel server over TLS
     *   channel_server_name  the name its certificate must carry [the host of channel]
     *   presence           keep the cluster's presence [true]
     *   presence_lease     seconds another node's presence is kept without news [60]
     *   presence_command   answer the client command {"cmd":"presence"} [true]
     *
     * An unknown name or a value of the wrong type throws a
     * GroupcastException (Result::ERR_INVALID_ARGUMENT) naming it; a
     * malformed address too; values start refuses throw Result::ERR_CONFIG,
     * a busy port Result::ERR_BIND.
     */
    public static function start(array $options = []): self
    {
        Options::check($options);
        $ffi = Library::ffi();
        $config = $ffi->new('groupcast_config*');
        Library::check($ffi->groupcast_config_new(\FFI::addr($config)), 'config');
        try {
            Options::apply($ffi, $config, $options);
            $server = $ffi->new('groupcast_server*');
            // The library's threads inherit this thread's signal mask: block
            // the stop signals while they start, so that PHP's handlers only
            // ever run on PHP's thread.
            $blocked = function_exists('pcntl_sigprocmask');
            if ($blocked) {
                pcntl_sigprocmask(SIG_BLOCK, [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2], $previous);
            }
            try {
                $result = $ffi->groupcast_server_start($config, \FFI::addr($server));
            } finally {
                if ($blocked) {
                    pcntl_sigprocmask(SIG_SETMASK, $previous);
                }
            }
            // The library's words are the message: "cannot listen on ADDR: ...".
            Library::check($result, '');
        } finally {
            $ffi->groupcast_config_free($config);
        }
        return new self($ffi, $server, (int) ($options['poll_batch'] ?? 256));
    }

    private function __construct(\FFI $ffi, \FFI\CData $server, int $capacity)
    {
        $this->ffi = $ffi;
        $this->server = $server;
        $this->capacity = max(1, $capacity);
        $this->events = $ffi->new("groupcast_event[{$this->capacity}]");
        $this->count = $ffi->new('size_t');
    }

    public function __destruct()
    {
        $this->free();
    }

    private function handle(): \FFI\CData
    {
        if ($this->server === null) {
            throw new GroupcastException('the server has been freed', Server::ERR_STOPPED);
        }
        return $this->server;
    }

    private function address(string $function): string
    {
        $buf = $this->ffi->new('char[128]');
        Library::check($this->ffi->$function($this->handle(), $buf, 128, null), $function);
        return \FFI::string($buf);
    }

    /** "ip:port" the websocket listener is bound to. */
    public function websocketAddress(): string
    {
        return $this->address('groupcast_server_websocket_address');
    }

    /** "ip:port" of the embedded channel server, or null without one. */
    public function channelAddress(): ?string
    {
        $address = $this->address('groupcast_server_channel_address');
        return $address === '' ? null : $address;
    }

    /**
     * Takes the waiting events, waiting up to $timeoutMs for the first
     * (negative: until one comes). Returns a list (empty on timeout) of
     * arrays copied out of the library's memory:
     *   ['type' => 'connect', 'conn', 'peer', 'path', 'query',
     *    'headers' => [[name, value], ...] in request order,
     *    'subprotocols' => the offered ones as one string, '' when none]
     *   ['type' => 'message', 'conn', 'data', 'binary' => bool]
     *   ['type' => 'close', 'conn', 'code']
     *   ['type' => 'channel', 'channel', 'data' (JSON text)]
     * Returns null once the server has stopped and every event was taken.
     */
    public function poll(int $timeoutMs): ?array
    {
        $result = $this->ffi->groupcast_server_poll(
            $this->handle(), $timeoutMs, $this->events, $this->capacity, \FFI::addr($this->count)
        );
        if ($result === Server::ERR_STOPPED) {
            return null;
        }
        Library::check($result, 'poll');
        $out = [];
        $n = $this->count->cdata;
        for ($i = 0; $i < $n; $i++) {
            $e = $this->events[$i];
            switch ($e->kind) {
                case 2:
                    $out[] = [
                        'type' => 'message',
                        'conn' => $e->conn,
                        'data' => $e->data_len > 0 ? \FFI::string($e->data, $e->data_len) : '',
                        'binary' => $e->is_binary,
                    ];
                    break;
                case 1:
                    $out[] = [
                        'type' => 'connect',
                        'conn' => $e->conn,
                        'peer' => \FFI::string($e->peer, $e->peer_len),
                        'path' => \FFI::string($e->path, $e->path_len),
                        'query' => $e->query_len > 0 ? \FFI::string($e->query, $e->query_len) : '',
                        'headers' => self::headers($e),
                        'subprotocols' => $e->subprotocols_len > 0
                            ? \FFI::string($e->subprotocols, $e->subprotocols_len) : '',
                    ];
                    break;
                case 3:
                    $out[] = ['type' => 'close', 'conn' => $e->conn, 'code' => $e->close_code];
                    break;
                case 4:
                    $out[] = [
                        'type' => 'channel',
                        'channel' => \FFI::string($e->channel, $e->channel_len),
                        'data' => \FFI::string($e->data, $e->data_len),
                    ];
                    break;
            }
        }
        return $out;
    }

    /**
     * The server's counters (groupcast_stats), one int per field:
     * connections, groups, connections_opened, connections_refused,
     * messages_in, bytes_in, messages_out, bytes_out, dropped_messages,
     * slow_consumer_closes, heartbeat_timeouts, bus_reconnects,
     * bus_dropped_publishes, bus_connected, bus_connect_attempts,
     * bus_auth_failures, bus_dropped_events, host_dropped_events.
     *
     * @return array<string, int>
     */
    public function stats(): array
    {
        $stats = $this->ffi->new('groupcast_stats');
        Library::check($this->ffi->groupcast_server_stats($this->handle(), \FFI::addr($stats)), 'stats');
        $out = [];
        foreach (\FFI::typeof($stats)->getStructFieldNames() as $field) {
            $out[$field] = $stats->$field;
        }
        return $out;
    }

    /**
     * Whether the server serves and its bus reaches the other nodes: the
     * report of groupcast_server_health (as GET /health answers it),
     * decoded, plus 'ok' => bool. E.g. ['ok' => true, 'status' => 'ok',
     * 'bus' => 'connected', 'connections' => 3], or 'status' =>
     * 'unavailable' with a 'reason'.
     */
    public function health(): array
    {
        $ok = $this->ffi->new('bool');
        $len = $this->ffi->new('size_t');
        for ($size = 512; ; $size *= 4) {
            $buf = $this->ffi->new("char[$size]");
            $result = $this->ffi->groupcast_server_health(
                $this->handle(), \FFI::addr($ok), $buf, $size, \FFI::addr($len)
            );
            if ($result !== Result::ERR_BUFFER_TOO_SMALL || $size > 1 << 20) {
                break;
            }
        }
        Library::check($result, 'health');
        $report = json_decode(\FFI::string($buf, $len->cdata), true, 8, JSON_THROW_ON_ERROR);
        return ['ok' => $ok->cdata] + $report;
    }

    /** A connect event's headers, copied: [[name, value], ...]. */
    private static function headers(\FFI\CData $e): array
    {
        $headers = [];
        for ($i = 0; $i < $e->headers_len; $i++) {
            $h = $e->headers[$i];
            $headers[] = [
                \FFI::string($h->name, $h->name_len),
                $h->value_len > 0 ? \FFI::string($h->value, $h->value_len) : '',
            ];
        }
        return $headers;
    }

    /** A file descriptor readable while events wait; do not read or close it. */
    public function notifyFd(): int
    {
        $fd = $this->ffi->new('int');
        Library::check($this->ffi->groupcast_server_notify_fd($this->handle(), \FFI::addr($fd)), 'notify_fd');
        return $fd->cdata;
    }

    public function sendText(int $conn, string $text): void
    {
        Library::check($this->ffi->groupcast_server_send_text($this->handle(), $conn, $text, strlen($text)), 'send_text');
    }

    public function sendBinary(int $conn, string $data): void
    {
        $n = strlen($data);
        $buf = $this->ffi->new('uint8_t[' . max(1, $n) . ']');
        \FFI::memcpy($buf, $data, $n);
        Library::check($this->ffi->groupcast_server_send_binary($this->handle(), $conn, $buf, $n), 'send_binary');
    }

    /** Closes a connection (1000-1003, 1007-1014, 3000-4999), or refuses one held for approval. */
    public function close(int $conn, int $code = 1000, string $reason = ''): void
    {
        Library::check(
            $this->ffi->groupcast_server_close($this->handle(), $conn, $code, $reason, strlen($reason)),
            'close'
        );
    }

    /**
     * Lets a connection held for approval ('events' with approve) be
     * upgraded, with one of the subprotocols it offered if given.
     */
    public function admit(int $conn, ?string $subprotocol = null): void
    {
        if ($subprotocol === null) {
            Library::check($this->ffi->groupcast_server_admit($this->handle(), $conn), 'admit');
            return;
        }
        Library::check(
            $this->ffi->groupcast_server_admit_subprotocol(
                $this->handle(),
                $conn,
                $subprotocol,
                strlen($subprotocol)
            ),
            'admit'
        );
    }

    /**
     * Refuses a connection held for approval with an HTTP $status (400-599)
     * and $body, before any websocket frame; close() refuses with 403.
     */
    public function refuse(int $conn, int $status = 403, string $body = ''): void
    {
        Library::check(
            $this->ffi->groupcast_server_refuse($this->handle(), $conn, $status, $body, strlen($body)),
            'refuse'
        );
    }

    /** Returns false when the connection already was in the group. */
    public function join(int $conn, string $group): bool
    {
        $joined = $this->ffi->new('bool');
        Library::check(
            $this->ffi->groupcast_server_join($this->handle(), $conn, $group, strlen($group), \FFI::addr($joined)),
            'join'
        );
        return $joined->cdata;
    }

    /** Returns false when the connection was not in the group. */
    public function leave(int $conn, string $group): bool
    {
        $left = $this->ffi->new('bool');
        Library::check(
            $this->ffi->groupcast_server_leave($this->handle(), $conn, $group, strlen($group), \FFI::addr($left)),
            'leave'
        );
        return $left->cdata;
    }

    /** Binds a connection of this server to $uid (1-256 bytes; replaces its uid). */
    public function bindUid(int $conn, string $uid): void
    {
        Library::check(
            $this->ffi->groupcast_server_bind_uid($this->handle(), $conn, $uid, strlen($uid)),
            'bind_uid'
        );
    }

    /** Unbinds a connection's uid. */
    public function unbindUid(int $conn): void
    {
        Library::check($this->ffi->groupcast_server_unbind_uid($this->handle(), $conn), 'unbind_uid');
    }

    /** The uid a connection of this server is bound to, or null. */
    public function uidOf(int $conn): ?string
    {
        $bound = $this->ffi->new('bool');
        $len = $this->ffi->new('size_t');
        $buf = $this->ffi->new('char[260]');
        Library::check(
            $this->ffi->groupcast_server_uid_of($this->handle(), $conn, \FFI::addr($bound), $buf, 260, \FFI::addr($len)),
            'uid_of'
        );
        return $bound->cdata ? \FFI::string($buf, $len->cdata) : null;
    }

    /**
     * Sends $text to every connection bound to the uid (or to any of the
     * uids, each once), on every node; returns the local deliveries.
     *
     * @param string|list<string> $uids
     */
    public function sendToUid(string|array $uids, string $text): int
    {
        $uids = array_values(array_unique(is_array($uids) ? $uids : [$uids]));
        foreach ($uids as $uid) {
            if (!is_string($uid) || $uid === '' || strlen($uid) > 256) {
                throw new GroupcastException(
                    'invalid uid: a uid is a non-empty string of at most 256 bytes',
                    Result::ERR_INVALID_UID
                );
            }
        }
        $total = 0;
        $delivered = $this->ffi->new('size_t');
        foreach ($uids as $uid) {
            Library::check(
                $this->ffi->groupcast_server_send_to_uid(
                    $this->handle(), $uid, strlen($uid), $text, strlen($text), \FFI::addr($delivered)
                ),
                'send_to_uid'
            );
            $total += $delivered->cdata;
        }
        return $total;
    }

    /** Whether the uid has a connection on any node of the cluster. */
    public function isUidOnline(string $uid): bool
    {
        $online = $this->ffi->new('bool');
        Library::check(
            $this->ffi->groupcast_server_is_uid_online($this->handle(), $uid, strlen($uid), \FFI::addr($online)),
            'is_uid_online'
        );
        return $online->cdata;
    }

    /**
     * Who is in $group across the cluster: ['connections' => int, 'users'
     * => int, 'uids' => list<string> (at most $maxUids), 'truncated' => bool].
     */
    public function presence(string $group, int $maxUids = 1000): array
    {
        $len = $this->ffi->new('size_t');
        for ($size = 4096; ; $size *= 4) {
            $buf = $this->ffi->new("char[$size]");
            $result = $this->ffi->groupcast_server_presence(
                $this->handle(), $group, strlen($group), $maxUids, null, null, $buf, $size, \FFI::addr($len)
            );
            if ($result !== Result::ERR_BUFFER_TOO_SMALL || $size > 1 << 26) {
                break;
            }
        }
        Library::check($result, 'presence');
        return json_decode(\FFI::string($buf, $len->cdata), true, 8, JSON_THROW_ON_ERROR);
    }

    /** The cluster as this node sees it: nodes, connections, users, groups. */
    public function clusterStats(): array
    {
        $stats = $this->ffi->new('groupcast_cluster_stats');
        Library::check($this->ffi->groupcast_server_cluster_stats($this->handle(), \FFI::addr($stats)), 'cluster_stats');
        return [
            'nodes' => $stats->nodes,
            'connections' => $stats->connections,
            'users' => $stats->users,
            'groups' => $stats->groups,
        ];
    }

    /** Every member of $group leaves it, on every node; returns the local members that left. */
    public function ungroup(string $group): int
    {
        $left = $this->ffi->new('size_t');
        Library::check(
            $this->ffi->groupcast_server_ungroup($this->handle(), $group, strlen($group), \FFI::addr($left)),
            'ungroup'
        );
        return $left->cdata;
    }

    private function idList(array $ids): ?\FFI\CData
    {
        if ($ids === []) {
            return null;
        }
        $list = $this->ffi->new('uint64_t[' . count($ids) . ']');
        foreach (array_values($ids) as $i => $id) {
            $list[$i] = $id;
        }
        return $list;
    }

    /** Sends to every member of $group on every node but $exclude; returns the local deliveries. */
    public function sendToGroup(string $group, string $text, array $exclude = []): int
    {
        $delivered = $this->ffi->new('size_t');
        Library::check($this->ffi->groupcast_server_send_to_group(
            $this->handle(), $group, strlen($group), $text, strlen($text),
            $this->idList($exclude), count($exclude), \FFI::addr($delivered)
        ), 'send_to_group');
        return $delivered->cdata;
    }

    /**
     * As sendToGroup, returning [delivered, offset]: offset is the message's
     * position in the group's history (null when the server keeps none).
     */
    public function sendToGroupWithOffset(string $group, string $text, array $exclude = []): array
    {
        $delivered = $this->ffi->new('size_t');
        $offset = $this->ffi->new('uint64_t');
        Library::check($this->ffi->groupcast_server_send_to_group_with_offset(
            $this->handle(), $group, strlen($group), $text, strlen($text),
            $this->idList($exclude), count($exclude), \FFI::addr($delivered), \FFI::addr($offset)
        ), 'send_to_group_with_offset');
        return [$delivered->cdata, $offset->cdata === 0 ? null : $offset->cdata];
    }

    /**
     * The group's history: [epoch, [[offset, message], ...]], the kept
     * messages after offset $since (all when null), oldest first, at most
     * $limit. Throws when the server keeps no history.
     */
    public function history(string $group, ?int $since = null, int $limit = 100): array
    {
        $history = $this->ffi->new('groupcast_history*');
        Library::check($this->ffi->groupcast_server_history(
            $this->handle(), $group, strlen($group), $since ?? 0, $limit, \FFI::addr($history)
        ), 'history');
        try {
            $text = $this->ffi->new('const char*');
            $len = $this->ffi->new('size_t');
            $offset = $this->ffi->new('uint64_t');
            Library::check(
                $this->ffi->groupcast_history_epoch($history, \FFI::addr($text), \FFI::addr($len)),
                'history_epoch'
            );
            $epoch = \FFI::string($text, $len->cdata);
            $messages = [];
            $n = $this->ffi->groupcast_history_count($history);
            for ($i = 0; $i < $n; $i++) {
                Library::check($this->ffi->groupcast_history_get(
                    $history, $i, \FFI::addr($offset), \FFI::addr($text), \FFI::addr($len)
                ), 'history_get');
                $messages[] = [$offset->cdata, \FFI::string($text, $len->cdata)];
            }
            return [$epoch, $messages];
        } finally {
            $this->ffi->groupcast_history_free($history);
        }
    }

    /** Sends to every connection of this node but $exclude; returns how many. */
    public function broadcast(string $text, array $exclude = []): int
    {
        $delivered = $this->ffi->new('size_t');
        Library::check($this->ffi->groupcast_server_broadcast(
            $this->handle(), $text, strlen($text), $this->idList($exclude), count($exclude), \FFI::addr($delivered)
        ), 'broadcast');
        return $delivered->cdata;
    }

    public function groupSize(string $group): int
    {
        $size = $this->ffi->new('size_t');
        Library::check(
            $this->ffi->groupcast_server_group_size($this->handle(), $group, strlen($group), \FFI::addr($size)),
            'group_size'
        );
        return $size->cdata;
    }

    /** @return string[] the groups with local members */
    public function groups(): array
    {
        $groups = $this->ffi->new('groupcast_groups*');
        Library::check($this->ffi->groupcast_server_groups($this->handle(), \FFI::addr($groups)), 'groups');
        try {
            $names = [];
            $name = $this->ffi->new('const char*');
            $len = $this->ffi->new('size_t');
            $n = $this->ffi->groupcast_groups_count($groups);
            for ($i = 0; $i < $n; $i++) {
                Library::check(
                    $this->ffi->groupcast_groups_get($groups, $i, \FFI::addr($name), \FFI::addr($len)),
                    'groups_get'
                );
                $names[] = \FFI::string($name, $len->cdata);
            }
            return $names;
        } finally {
            $this->ffi->groupcast_groups_free($groups);
        }
    }

    public function connectionCount(): int
    {
        $count = $this->ffi->new('size_t');
        Library::check(
            $this->ffi->groupcast_server_connection_count($this->handle(), \FFI::addr($count)),
            'connection_count'
        );
        return $count->cdata;
    }

    /** Publishes $json on a channel, as the seed's Channel\Client::publish. */
    public function publish(string $channel, string $json): void
    {
        Library::check($this->ffi->groupcast_server_channel_publish(
            $this->handle(), $channel, strlen($channel), $json, strlen($json)
        ), 'publish');
    }

    /** Subscribes to a channel, as Channel\Client::on; data arrives through poll. */
    public function subscribe(string $channel): void
    {
        Library::check(
            $this->ffi->groupcast_server_channel_subscribe($this->handle(), $channel, strlen($channel)),
            'subscribe'
        );
    }

    public function unsubscribe(string $channel): void
    {
        Library::check(
            $this->ffi->groupcast_server_channel_unsubscribe($this->handle(), $channel, strlen($channel)),
            'unsubscribe'
        );
    }

    /**
     * Reads the TLS certificate and key files again: new connections get
     * the new certificate, open ones stay. Throws Result::ERR_CONFIG naming
     * the file when it cannot be used (the certificate in use then stays),
     * or when the server has no TLS.
     */
    public function reloadTls(): void
    {
        Library::check($this->ffi->groupcast_server_reload_tls($this->handle()), 'reload_tls');
    }

    /** Stops the server (clients get 1001); a second call does nothing. */
    public function stop(): void
    {
        $result = $this->ffi->groupcast_server_stop($this->handle());
        if ($result !== Server::ERR_STOPPED) {
            Library::check($result, 'stop');
        }
    }

    /** Stops if needed and releases the server; called by the destructor. */
    public function free(): void
    {
        if ($this->server !== null) {
            $this->ffi->groupcast_server_free($this->server);
            $this->server = null;
        }
    }
}
