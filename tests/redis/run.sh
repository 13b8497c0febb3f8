#!/usr/bin/env bash
# Runs the Redis bus tests (tests/redis.rs, tests/history_redis.rs,
# tests/history_redis_cluster.rs). They start their own redis-server
# processes (standalone and a 3-master cluster) on free loopback ports and
# stop them, so all this script needs is the Debian packages:
# redis-server, and redis-tools for `redis-cli --cluster create`.
#
#   bash tests/redis/run.sh                  install if missing, then test
#   bash tests/redis/run.sh --install-only   install if missing (for a test
#                                            command that runs every target)
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    echo "installing redis-server and redis-tools"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq redis-server redis-tools >/dev/null
fi
# If Debian's package started a system redis on 6379, the tests do not use it
# (they pick free ports), so it is left alone.
redis-server --version
if [[ ${1:-} == --install-only ]]; then
    exit 0
fi
cargo test --test redis --test history_redis --test history_redis_cluster "$@"
