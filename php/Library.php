<?php

declare(strict_types=1);

namespace Groupcast;

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
        $candidates = ["$root/target/release/libgroupcast.so", "$root/target/debug/libgroupcast.so"];
        // Then the library as scripts/install-c.sh installs it, by the
        // SONAME of the ABI these declarations describe.
        foreach (['/usr/local/lib', '/usr/lib', '/usr/lib64', '/usr/lib/' . php_uname('m') . '-linux-gnu'] as $dir) {
            $candidates[] = "$dir/" . self::soname();
        }
        foreach ($candidates as $candidate) {
            $path = realpath($candidate);
            if ($path !== false) {
                return $path;
            }
        }
        throw new GroupcastException(
            "libgroupcast.so not found under $root/target nor installed as " . self::soname()
            . ': run `cargo build --release` or scripts/install-c.sh, or set GROUPCAST_LIB'
        );
    }

    /** The SONAME of the ABI these declarations describe: libgroupcast.so.0.MINOR before 1.0. */
    public static function soname(): string
    {
        [$major, $minor] = explode('.', self::VERSION);
        return $major === '0' ? "libgroupcast.so.0.$minor" : "libgroupcast.so.$major";
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

    /**
     * Throws for a result other than GROUPCAST_OK: a GroupcastException
     * whose code is the result and whose message is "$what: " and the
     * library's details (only the details when $what is '').
     */
    public static function check(int $result, string $what): void
    {
        if ($result === Result::OK) {
            return;
        }
        $ffi = self::ffi();
        $buf = $ffi->new('char[512]');
        $ffi->groupcast_last_error_message($buf, 512, null);
        $detail = \FFI::string($buf);
        if ($detail === '') {
            $detail = Result::message($result);
        }
        throw new GroupcastException($what === '' ? $detail : "$what: $detail", $result);
    }
}
