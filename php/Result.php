<?php

declare(strict_types=1);

namespace Groupcast;

/**
 * The groupcast_result codes of the C ABI (include/groupcast.h), as
 * carried by GroupcastException::getCode().
 */
final class Result
{
    const OK = 0;
    /** A required pointer was NULL. */
    const ERR_NULL_PARAMETER = 1;
    /** Text that is not UTF-8. */
    const ERR_INVALID_UTF8 = 2;
    /** A malformed address, an unknown option or flag, a value of the wrong type. */
    const ERR_INVALID_ARGUMENT = 3;
    /** A configuration start refuses (e.g. both channel options, a 0 limit). */
    const ERR_CONFIG = 4;
    /** A listener could not be bound (e.g. the port is in use). */
    const ERR_BIND = 5;
    /** Threads could not be started. */
    const ERR_RUNTIME = 6;
    /** No open connection with that id. */
    const ERR_UNKNOWN_CONNECTION = 7;
    /** An empty or over-long group id. */
    const ERR_INVALID_GROUP = 8;
    /** The connection is in too many groups. */
    const ERR_JOIN = 9;
    /** A close code a server may not send. */
    const ERR_INVALID_CLOSE_CODE = 10;
    /** No channel server, a reserved or empty channel name, data not JSON. */
    const ERR_CHANNEL = 11;
    /** The server was stopped. */
    const ERR_STOPPED = 12;
    /** Poll on a server taking no events. */
    const ERR_MODE = 13;
    /** A buffer too small for the answer. */
    const ERR_BUFFER_TOO_SMALL = 14;
    /** A bug in groupcast, caught at the boundary. */
    const ERR_PANIC = 15;
    /** A uid is empty or longer than 256 bytes. */
    const ERR_INVALID_UID = 16;

    /** The library's text for a code (groupcast_result_message). */
    public static function message(int $code): string
    {
        $ffi = Library::ffi();
        $buf = $ffi->new('char[256]');
        $ffi->groupcast_result_message($code, $buf, 256, null);
        return \FFI::string($buf);
    }
}
