<?php
/*
 * gameproto SDK for PHP, loaded before the user's file with -d auto_prepend_file=.
 *
 * \gameproto_sdk\send($command) sends any JSON value to the game engine and returns its
 * reply (objects as associative arrays).  A reply that is an object with an "error" key
 * throws \gameproto_sdk\EngineError (for instance "engine call timed out" when the engine
 * took more than 10 s).
 */
namespace gameproto_sdk;

class EngineError extends \Exception
{
}

function send($command)
{
    static $requests = null;
    static $replies = null;
    // Output printed before the call must reach the user before the call does.
    \flush();
    \fflush(\STDERR);
    if ($requests === null) {
        $requests = \fopen('php://fd/3', 'wb');
        $replies = \fopen('php://fd/4', 'rb');
    }
    $line = \json_encode(
        $command,
        \JSON_THROW_ON_ERROR | \JSON_UNESCAPED_SLASHES | \JSON_UNESCAPED_UNICODE | \JSON_PRESERVE_ZERO_FRACTION
    ) . "\n";
    for ($offset = 0; $offset < \strlen($line); $offset += $written) {
        $written = \fwrite($requests, \substr($line, $offset));
        if ($written === false || $written === 0) {
            throw new EngineError('engine channel closed');
        }
    }
    \fflush($requests);
    $reply = \fgets($replies);
    if ($reply === false || \substr($reply, -1) !== "\n") {
        throw new EngineError('engine channel closed');
    }
    $value = \json_decode($reply, true, 512, \JSON_THROW_ON_ERROR | \JSON_BIGINT_AS_STRING);
    if (\is_array($value) && !\array_is_list($value) && \array_key_exists('error', $value)) {
        throw new EngineError((string) $value['error']);
    }
    return $value;
}
