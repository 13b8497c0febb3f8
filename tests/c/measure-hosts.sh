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
#   tests/c/measure-hosts.sh [--json FILE] [GROUPS] [WINDOW] [SECONDS] [ROUNDS]
#
# --json FILE also writes one JSON object per measurement to FILE (JSON
# lines: host, round, settings, load average and loadgen's report, or
# "failed" with the reason), for benches/run.py. A host that fails to start
# or to be measured is reported and the others are still measured; the exit
# status is then 1.
set -euo pipefail
json_out=
if [[ ${1:-} == --json ]]; then
    json_out=${2:?--json needs a file}
    # Relative to where the caller is, not to the repository root below.
    [[ "$json_out" = /* ]] || json_out="$PWD/$json_out"
    shift 2
fi
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
groups=${1:-64}
window=${2:-256}
seconds=${3:-5}
rounds=${4:-3}
[[ -z $json_out ]] || : >"$json_out"

target=${CARGO_TARGET_DIR:-target}
[[ "$target" = /* ]] || target="$root/$target"
cargo build --quiet --release --lib --bins
(cd benches/loadgen && CARGO_TARGET_DIR="$target" cargo build --quiet --release)
rel="$target/release"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cc -std=c11 -O2 -I include examples/c/seed.c -o "$work/seed" -L "$rel" -lgroupcast -Wl,-rpath,"$rel" -pthread

failures=0
# measure HOST NAME ROUND COMMAND...: one measurement; prints a line and,
# with --json, appends one JSON line. Failures are reported, not fatal, so
# that one host missing (say PHP without FFI) does not hide the others.
measure() {
    local host=$1 name=$2 round=$3
    shift 3
    local load1
    load1=$(cut -d' ' -f1 /proc/loadavg)
    "$@" --listen 127.0.0.1:0 --channel-listen 127.0.0.1:0 >"$work/out" 2>"$work/err" &
    local pid=$!
    local addr=
    for _ in $(seq 100); do
        addr=$(sed -n 's/.*websocket=\([^ ]*\).*/\1/p' "$work/out")
        [[ -n $addr ]] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    local json= failed=
    if [[ -z $addr ]]; then
        # PHP may print its fatal error on stdout, so both are looked at.
        failed="did not start: $(cat "$work/err" "$work/out" | grep -v '^[[:space:]]*$' | head -n1 || true)"
    else
        # loadgen exits 1 when deliveries were lost and still reports them;
        # without a report, its last error line is the reason.
        json=$("$rel/loadgen" run --url "ws://$addr" --server-pid "$pid" --mode flood \
            --groups "$groups" --members 1 --senders 1 --senders-are-members \
            --window "$window" --duration "$seconds" --probes 0 --size 64 2>"$work/loadgen-err" \
            | grep '^{' | tail -n1) || true
        [[ -n $json ]] || failed="loadgen: $(tail -n1 "$work/loadgen-err")"
    fi
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" || true
    [[ -z $failed ]] || failures=$((failures + 1))
    python3 -c '
import json, sys
host, name, rnd, load1, report, failed, out = sys.argv[1:8]
groups, window, seconds = map(int, sys.argv[8:11])
line = dict(host=host, name=name, round=int(rnd), groups=groups, window=window, seconds=seconds,
            size=64, load1=float(load1))
if failed:
    print(f"{name:<22} failed: {failed}")
    line["failed"] = failed
else:
    r = json.loads(report)
    rate, us, cores, lost = r["deliveries_per_s"], r["server_cpu_us_per_delivery"], r["server_cpu_util"], r["lost"]
    print(f"{name:<22} {rate:>9.0f} msg/s  server {us:.1f} us/msg ({cores:.2f} cores)  lost {lost}")
    line["report"] = r
if out:
    with open(out, "a") as f:
        f.write(json.dumps(line) + "\n")
' "$host" "$name" "$round" "$load1" "$json" "$failed" "$json_out" "$groups" "$window" "$seconds"
}

echo "groups=$groups window=$window seconds=$seconds size=64 on $(nproc) cores; $(uptime | sed 's/.*load/load/')"
for round in $(seq "$rounds"); do
    echo "round $round"
    measure builtin "built-in (Rust)" "$round" "$rel/groupcast" serve
    measure c "C callbacks (seed.c)" "$round" "$work/seed"
    GROUPCAST_LIB="$rel/libgroupcast.so" measure php "PHP poll (seed.php)" "$round" php examples/php/seed.php
done
echo "$(uptime | sed 's/.*load/load/')"
[[ $failures -eq 0 ]]
