#!/usr/bin/env bash
# Measures how many client messages per second each kind of host handles:
# built-in handling (the groupcast binary), the C callbacks host
# (examples/c/seed.c) and the PHP poll host (examples/php/seed.php).
#
# Every sender is the only member of its own group and floods
# send_to_group to it (benches/loadgen flood mode): each message crosses
# the host once and is delivered once, so deliveries/s = messages/s handled.
#
# Hosts are measured in turn, ROUNDS times, so that a busy machine affects
# them alike; compare within a run.
#
#   tests/c/measure-hosts.sh [GROUPS] [WINDOW] [SECONDS] [ROUNDS]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
groups=${1:-64}
window=${2:-256}
seconds=${3:-5}
rounds=${4:-3}

target=${CARGO_TARGET_DIR:-target}
[[ "$target" = /* ]] || target="$root/$target"
cargo build --quiet --release --lib --bins
(cd benches/loadgen && CARGO_TARGET_DIR="$target" cargo build --quiet --release)
rel="$target/release"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cc -std=c11 -O2 -I include examples/c/seed.c -o "$work/seed" -L "$rel" -lgroupcast -Wl,-rpath,"$rel" -pthread

measure() {
    local name=$1
    shift
    "$@" --listen 127.0.0.1:0 --channel-listen 127.0.0.1:0 >"$work/out" 2>"$work/err" &
    local pid=$!
    for _ in $(seq 100); do grep -q websocket= "$work/out" && break; sleep 0.1; done
    local addr
    addr=$(sed -n 's/.*websocket=\([^ ]*\).*/\1/p' "$work/out")
    local json
    json=$("$rel/loadgen" run --url "ws://$addr" --server-pid "$pid" --mode flood \
        --groups "$groups" --members 1 --senders 1 --senders-are-members \
        --window "$window" --duration "$seconds" --probes 0 --size 64 2>/dev/null)
    kill -TERM "$pid"
    wait "$pid"
    python3 -c '
import json, sys
name, r = sys.argv[1], json.loads(sys.argv[2])
rate, us, cores, lost = r["deliveries_per_s"], r["server_cpu_us_per_delivery"], r["server_cpu_util"], r["lost"]
print(f"{name:<22} {rate:>9.0f} msg/s  server {us:.1f} us/msg ({cores:.2f} cores)  lost {lost}")
' "$name" "$json"
}

echo "groups=$groups window=$window seconds=$seconds size=64 on $(nproc) cores; $(uptime | sed 's/.*load/load/')"
for round in $(seq "$rounds"); do
    echo "round $round"
    measure "built-in (Rust)" "$rel/groupcast" serve
    measure "C callbacks (seed.c)" "$work/seed"
    GROUPCAST_LIB="$rel/libgroupcast.so" measure "PHP poll (seed.php)" php examples/php/seed.php
done
echo "$(uptime | sed 's/.*load/load/')"
