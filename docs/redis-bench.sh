#!/usr/bin/env bash
# Cross-node throughput and latency through each bus backend: two groupcast
# nodes, members split across them (loadgen spreads members and probes
# round-robin over the two URLs), sender on node A; bus = channel server,
# standalone Redis, or a 3-master Redis Cluster (sharded pub/sub). Same loads
# as BENCHMARKS.md scenario 4. Prints one line per run: backend, mode, the
# loadgen JSON. Needs redis-server and redis-cli (tests/redis/run.sh
# --install-only).
#
#   GROUPCAST_BIN=target/release/groupcast LOADGEN_BIN=benches/target/release/loadgen \
#       bash docs/redis-bench.sh        # ONLY=channel,redis,redis-cluster to pick
set -euo pipefail
ulimit -n "$(ulimit -Hn)"
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# start NAME KEY CMD... : runs CMD, waits for KEY=ADDR on its stdout, sets $addr.
start() {
    local name=$1 key=$2; shift 2
    "$@" >"$work/$name.out" 2>"$work/$name.err" &
    pids+=($!)
    for _ in $(seq 200); do
        if grep -q "$key=" "$work/$name.out" 2>/dev/null; then
            addr=$(grep -o "$key=[^ ]*" "$work/$name.out" | head -1 | cut -d= -f2)
            return
        fi
        sleep 0.05
    done
    echo "$name did not start" >&2; cat "$work/$name.err" >&2; exit 1
}
# A free port whose port + 10000 (Redis Cluster's bus) is free and valid too.
free_port() { python3 -c '
import socket
while True:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]
    if p <= 55535:
        try:
            socket.socket().bind(("127.0.0.1", p + 10000)); break
        except OSError: pass
print(p)'; }
redis() { # port [extra args]
    local port=$1; shift
    mkdir -p "$work/r$port"
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work/r$port" "$@" >/dev/null &
    pids+=($!)
    local pid=$!
    until redis-cli -p "$port" ping >/dev/null 2>&1; do
        kill -0 "$pid" 2>/dev/null || { echo "redis-server on $port exited" >&2; exit 1; }
        sleep 0.05
    done
}

run() { # label bus-args...
    local label=$1; shift
    local a b
    start "$label-a" websocket "$GROUPCAST_BIN" serve --listen 127.0.0.1:0 "$@"; a=$addr
    start "$label-b" websocket "$GROUPCAST_BIN" serve --listen 127.0.0.1:0 "$@"; b=$addr
    sleep 0.5
    local server_pids
    server_pids=$(IFS=,; echo "${pids[*]}")
    for load in "${loads[@]}"; do
        # shellcheck disable=SC2086
        "$LOADGEN_BIN" run --label "$label" --url "ws://$a" --url "ws://$b" \
            --server-pid "$server_pids" --mode $load --duration 3 --probes 4 |
            python3 -c 'import json,sys; r=json.load(sys.stdin); print(sys.argv[1], sys.argv[2], json.dumps(r))' "$label" "${load// /_}"
    done
}

only=${ONLY:-channel,redis,redis-cluster}
loads=("flood --members 1000 --senders 1 --size 64 --window 16"
       "paced --members 1000 --senders 5 --rate 50"
       "paced --members 100 --senders 1 --rate 100")
want() { [[ ",$only," == *",$1,"* ]]; }

# 1. channel server
if want channel; then
start channel channel "$GROUPCAST_BIN" channel --listen 127.0.0.1:0
run channel --channel "$addr"
cleanup; pids=(); work=$(mktemp -d)
fi

# 2. standalone Redis
if want redis; then
port=$(free_port); redis "$port"
run redis --bus "redis://127.0.0.1:$port"
cleanup; pids=(); work=$(mktemp -d)
fi

# 3. 3-master Redis Cluster (sharded pub/sub)
if want redis-cluster; then
ports=(); for _ in 1 2 3; do p=$(free_port); ports+=("$p"); redis "$p" --cluster-enabled yes --cluster-config-file "nodes-$p.conf"; done
redis-cli --cluster create "${ports[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes >/dev/null
until redis-cli -p "${ports[0]}" cluster info | grep -q cluster_state:ok; do sleep 0.1; done
sleep 1
run redis-cluster --bus "redis+cluster://127.0.0.1:${ports[0]},127.0.0.1:${ports[1]},127.0.0.1:${ports[2]}"
fi
