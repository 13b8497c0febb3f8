<?php

declare(strict_types=1);

namespace Groupcast;

/**
 * The options of Server::start, checked before any reaches the library:
 * an unknown name or a value of the wrong type is a GroupcastException
 * with code Result::ERR_INVALID_ARGUMENT naming it. Ranges (a 0 limit, an
 * idle timeout under the ping interval) are the library's to refuse, at
 * start, with Result::ERR_CONFIG; a malformed address is refused by its
 * setter with Result::ERR_INVALID_ARGUMENT.
 *
 * One option per C setter (include/groupcast.h); durations are seconds
 * (int or float), passed on as milliseconds.
 */
final class Options
{
    /** Option name => kind. */
    const KINDS = [
        'listen' => 'address',
        'channel_listen' => '?address',
        'channel' => '?address',
        'bus' => '?string',
        'workers' => 'count',
        'builtin_commands' => 'bool',
        'demo_page' => 'bool',
        'events' => 'count',
        'queue_capacity' => 'count',
        'max_message_size' => 'limit',
        'outbound_queue_bytes' => 'limit',
        'max_groups_per_connection' => 'limit',
        'max_group_id_len' => 'limit',
        'max_connections' => 'limit',
        'ping_interval' => 'duration',
        'idle_timeout' => 'duration',
        'handshake_timeout' => 'duration',
        'drain_timeout' => 'duration',
        'send_buffer_size' => 'limit',
        'slow_consumer' => 'slow_consumer',
        'allowed_origins' => 'list',
        'channel_secret' => '?string',
        'metrics_listen' => '?address',
        'poll_batch' => 'count',
        'tls_cert' => 'path',
        'tls_key' => 'path',
        'channel_tls_cert' => 'path',
        'channel_tls_key' => 'path',
        'channel_ca' => 'path',
        'channel_server_name' => 'path',
        'channel_protocol' => '?string',
        'presence' => 'bool',
        'presence_lease' => 'duration',
        'presence_command' => 'bool',
        'history_size' => 'limit',
        'history_ttl' => 'duration',
        'history_max_bytes' => 'limit',
    ];

    /** groupcast_limit values. */
    const LIMITS = [
        'max_message_size' => 1,
        'outbound_queue_bytes' => 2,
        'max_groups_per_connection' => 3,
        'max_group_id_len' => 4,
        'max_connections' => 5,
        'ping_interval' => 6,
        'idle_timeout' => 7,
        'handshake_timeout' => 8,
        'drain_timeout' => 9,
        'send_buffer_size' => 10,
        'history_size' => 170,
        'history_ttl' => 171,
        'history_max_bytes' => 172,
    ];

    /** groupcast_slow_consumer values. */
    const SLOW_CONSUMER = ['close' => 1, 'drop' => 2];

    /**
     * Throws for unknown names (suggesting the closest known one) and for
     * values of the wrong type. null means "the default" for every option,
     * and "off" for channel_listen, channel, bus, channel_secret and
     * metrics_listen.
     */
    public static function check(array $options): void
    {
        $problems = [];
        foreach ($options as $name => $value) {
            $name = (string) $name;
            $kind = self::KINDS[$name] ?? null;
            if ($kind === null) {
                $problems[] = "unknown option '$name'" . self::suggestion($name);
                continue;
            }
            if ($value === null) {
                continue;
            }
            $expected = match ($kind) {
                'address', '?address', '?string', 'path' => is_string($value) ? null : 'a string',
                'count', 'limit' => is_int($value) && $value >= 0 ? null : 'a non-negative int',
                'bool' => is_bool($value) ? null : 'a bool',
                'duration' => (is_int($value) || is_float($value)) && is_finite((float) $value) && $value >= 0
                    ? null : 'a non-negative number of seconds (int or float)',
                'slow_consumer' => is_string($value) && isset(self::SLOW_CONSUMER[$value]) ? null : "'close' or 'drop'",
                'list' => is_array($value) && array_is_list($value)
                    && count(array_filter($value, 'is_string')) === count($value) ? null : 'a list of strings',
            };
            if ($expected !== null) {
                $problems[] = "option '$name' must be $expected, not " . self::describe($value);
            }
        }
        if ($problems !== []) {
            throw new GroupcastException(implode('; ', $problems), Result::ERR_INVALID_ARGUMENT);
        }
    }

    /** Applies checked options to a groupcast_config*. */
    public static function apply(\FFI $ffi, \FFI\CData $config, array $options): void
    {
        $text = function (string $setter, ?string $value) use ($ffi, $config): void {
            $value ??= '';
            Library::check($ffi->$setter($config, $value, strlen($value)), $setter);
        };
        foreach ($options as $name => $value) {
            $kind = self::KINDS[$name];
            if ($value === null && $kind[0] !== '?') {
                continue;
            }
            match (true) {
                str_starts_with($name, 'presence') => null, // one setter for the three, below
                $kind === 'address' || $kind[0] === '?' => $text("groupcast_config_set_$name", $value),
                $name === 'workers' => Library::check($ffi->groupcast_config_set_workers($config, $value), $name),
                $name === 'builtin_commands' => Library::check(
                    $ffi->groupcast_config_set_builtin_commands($config, $value), $name
                ),
                $name === 'demo_page' => Library::check($ffi->groupcast_config_set_demo_page($config, $value), $name),
                $name === 'events' => Library::check($ffi->groupcast_config_set_events($config, $value), $name),
                $name === 'queue_capacity' => Library::check(
                    $ffi->groupcast_config_set_queue_capacity($config, $value), $name
                ),
                $kind === 'limit' => Library::check(
                    $ffi->groupcast_config_set_limit($config, self::LIMITS[$name], $value), $name
                ),
                $kind === 'duration' => Library::check(
                    $ffi->groupcast_config_set_limit($config, self::LIMITS[$name], (int) round($value * 1000)), $name
                ),
                $kind === 'slow_consumer' => Library::check(
                    $ffi->groupcast_config_set_slow_consumer($config, self::SLOW_CONSUMER[$value]), $name
                ),
                $kind === 'list' => array_map(
                    fn (string $origin) => $text('groupcast_config_add_allowed_origin', $origin), $value
                ),
                default => null, // poll_batch: the wrapper's own; paths and presence: below
            };
        }
        // One setter per pair (groupcast_config_set_tls, _set_channel_ca):
        // one half alone is the library's to refuse.
        $pair = function (string $setter, ?string $first, ?string $second) use ($ffi, $config): void {
            [$first, $second] = [$first ?? '', $second ?? ''];
            Library::check($ffi->$setter($config, $first, strlen($first), $second, strlen($second)), $setter);
        };
        if (isset($options['tls_cert']) || isset($options['tls_key'])) {
            $pair('groupcast_config_set_tls', $options['tls_cert'] ?? null, $options['tls_key'] ?? null);
        }
        if (isset($options['channel_tls_cert']) || isset($options['channel_tls_key'])) {
            $pair('groupcast_config_set_channel_tls', $options['channel_tls_cert'] ?? null, $options['channel_tls_key'] ?? null);
        }
        if (isset($options['channel_ca']) || isset($options['channel_server_name'])) {
            $pair('groupcast_config_set_channel_ca', $options['channel_ca'] ?? null, $options['channel_server_name'] ?? null);
        }
        $presence = array_intersect_key($options, ['presence' => 1, 'presence_lease' => 1, 'presence_command' => 1]);
        if ($presence !== []) {
            Library::check($ffi->groupcast_config_set_presence(
                $config,
                $presence['presence'] ?? true,
                isset($presence['presence_lease']) ? max(1, (int) round($presence['presence_lease'] * 1000)) : 0,
                $presence['presence_command'] ?? true
            ), 'presence');
        }
    }

    private static function suggestion(string $name): string
    {
        $best = null;
        $distance = PHP_INT_MAX;
        foreach (array_keys(self::KINDS) as $known) {
            $d = levenshtein(strtolower($name), $known);
            if ($d < $distance) {
                [$best, $distance] = [$known, $d];
            }
        }
        return $distance <= max(2, intdiv(strlen($name), 3)) ? " (did you mean '$best'?)" : '';
    }

    private static function describe(mixed $value): string
    {
        return match (true) {
            is_string($value) => "'$value' (string)",
            is_bool($value) => $value ? 'true' : 'false',
            is_int($value), is_float($value) => var_export($value, true) . ' (' . get_debug_type($value) . ')',
            default => get_debug_type($value),
        };
    }
}
