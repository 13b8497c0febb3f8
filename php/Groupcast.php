<?php
/**
 * groupcast from PHP, through FFI: a small wrapper over the C ABI
 * (include/groupcast.h; the FFI declarations are include/groupcast_ffi.h).
 * One class per file, PSR-4 under php/ (composer.json); this file loads
 * them all for scripts that `require 'php/Groupcast.php'`.
 *
 * PHP code never runs on a library thread: PHP-FFI callbacks called from a
 * foreign thread crash PHP, so this wrapper takes events by polling
 * (Server::poll) from PHP's own thread, and a notification fd
 * (Server::notifyFd) lets an event loop wait for them.
 *
 * The library is found by absolute path: $GROUPCAST_LIB if set, else
 * target/release then target/debug of the checkout this file is in, else
 * the library scripts/install-c.sh installed (by its SONAME).
 */

declare(strict_types=1);

require_once __DIR__ . '/GroupcastException.php';
require_once __DIR__ . '/Result.php';
require_once __DIR__ . '/Library.php';
require_once __DIR__ . '/Options.php';
require_once __DIR__ . '/Server.php';
