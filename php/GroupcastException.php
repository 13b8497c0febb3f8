<?php

declare(strict_types=1);

namespace Groupcast;

/**
 * A failed call. getCode() is the groupcast_result (a Result constant):
 * Result::ERR_BIND when a listener cannot be bound, Result::ERR_CONFIG for
 * a configuration start refuses, Result::ERR_INVALID_ARGUMENT for an
 * unknown option or a value of the wrong type, and so on.
 */
final class GroupcastException extends \RuntimeException
{
}
