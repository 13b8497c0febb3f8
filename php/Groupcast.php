<?php
/**
 * groupcast from PHP, through FFI: a small wrapper over the C ABI
 * (include/groupcast.h; the FFI declarations are include/groupcast_ffi.h).
 *
 * PHP code never runs on a library thread: PHP-FFI callbacks called from a
 * foreign thread crash PHP, so this wrapper takes events by polling
 * (Server::poll) from PHP's own thread, and a notification fd
 * (Server::notifyFd) lets an event loop wait for them.
 *
 * The library is found by absolute path: $GROUPCAST_LIB if set, else
 * target/release then target/debug of the checkout this file is in.
 */

declare(strict_types=1);

namespace Groupcast;

/** A failed call; getCode() is the groupcast_result. */
final class GroupcastException extends \RuntimeException
{
}

/** Loads the library once and checks that it is the version expected. */
final class Library
{
    /** The version of the declarations shipped with this wrapper. */
    const VERSION = '0.1.0';

    private static ?\FFI $ffi = null;

    /** The absolute path of the shared library to load. */
    public static function path(): string
    {
        $override = getenv('GROUPCAST_LIB');
        if ($override !== false && $override !== '') {
            $path = realpath($override);
            if ($path === false) {
                throw new GroupcastException("GROUPCAST_LIB=$override does not exist");
            }
            return $path;
        }
        $root = dirname(__DIR__);
        foreach (['release', 'debug'] as $profile) {
            $path = realpath("$root/target/$profile/libgroupcast.so");
            if ($path !== false) {
                return $path;
            }
        }
        throw new GroupcastException(
            "libgroupcast.so not found under $root/target: run `cargo build --release`, or set GROUPCAST_LIB"
        );
    }

    public static function ffi(): \FFI
    {
        if (self::$ffi === null) {
            $declarations = file_get_contents(dirname(__DIR__) . '/include/groupcast_ffi.h');
            if ($declarations === false) {
                throw new GroupcastException('include/groupcast_ffi.h is missing');
            }
            $path = self::path();
            $ffi = \FFI::cdef($declarations, $path);
            $version = $ffi->groupcast_version();
            // Before 1.0 a minor release may change the ABI: major and minor
            // must match; the patch may differ.
            [$major, $minor] = explode('.', self::VERSION);
            $parts = explode('.', $version);
            if (($parts[0] ?? '') !== $major || ($parts[1] ?? '') !== $minor) {
                throw new GroupcastException(
                    "$path is groupcast $version, these declarations are for " . self::VERSION
                );
            }
            self::$ffi = $ffi;
        }
        return self::$ffi;
    }

    /** Throws for a result other than GROUPCAST_OK, with the library's details. */
    public static function check(int $result, string $what): void
    {
        if ($result === 0) {
            return;
        }
        $ffi = self::ffi();
        $buf = $ffi->new('char[512]');
        $ffi->groupcast_last_error_message($buf, 512, null);
        throw new GroupcastException("$what: " . \FFI::string($buf), $result);
    }
}

/** A groupcast server running in this process. */
final class Server
{
    const EVENTS_CONNECT = 1;
    const EVENTS_APPROVE = 2;
    const EVENTS_MESSAGE = 4;
    const EVENTS_CLOSE = 8;
    const EVENTS_CHANNEL = 16;

    const ERR_STOPPED = 12;

    private \FFI $ffi;
    /** groupcast_server*, null once freed. */
    private ?\FFI\CData $server;
    /** The caller-owned event array poll fills. */
    private \FFI\CData $events;
    private int $capacity;
    private \FFI\CData $count;

    /**
     * Starts a server and returns once it listens.
     *
     * Options: listen ("host:port", default "0.0.0.0:1234"), channel_listen
     * (embed a channel server there, default "127.0.0.1:2206"; null for
     * none), channel (join one instead), workers (unset: one per CPU; 0 is refused),
     * builtin_commands (default true), events (EVENTS_* flags OR-ed),
     * queue_capacity, poll_batch (events taken per poll, default 256).
     */
    public static function start(array $options = []): self
    {
        $ffi = Library::ffi();
        $config = $ffi->new('groupcast_config*');
        Library::check($ffi->groupcast_config_new(\FFI::addr($config)), 'config');
        try {
            $text = function (string $setter, ?string $value) use ($ffi, $config): void {
                $value ??= '';
                Library::check($ffi->$setter($config, $value, strlen($value)), $setter);
            };
            if (array_key_exists('listen', $options)) {
                $text('groupcast_config_set_listen', $options['listen']);
            }
            if (array_key_exists('channel_listen', $options)) {
                $text('groupcast_config_set_channel_listen', $options['channel_listen']);
            }
            if (array_key_exists('channel', $options)) {
                $text('groupcast_config_set_channel', $options['channel']);
            }
            if (isset($options['workers'])) {
                Library::check($ffi->groupcast_config_set_workers($config, $options['workers']), 'workers');
            }
            if (isset($options['builtin_commands'])) {
                Library::check(
                    $ffi->groupcast_config_set_builtin_commands($config, (bool) $options['builtin_commands']),
                    'builtin_commands'
                );
            }
            if (isset($options['events'])) {
                Library::check($ffi->groupcast_config_set_events($config, $options['events']), 'events');
            }
            if (isset($options['queue_capacity'])) {
                Library::check(
                    $ffi->groupcast_config_set_queue_capacity($config, $options['queue_capacity']),
                    'queue_capacity'
                );
            }
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
            Library::check($result, 'start');
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

    public function admit(int $conn): void
    {
        Library::check($this->ffi->groupcast_server_admit($this->handle(), $conn), 'admit');
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
