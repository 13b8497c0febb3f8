#!/usr/bin/env python3
"""Runs the groupcast benchmark scenarios and writes BENCHMARKS.md.

Started by benches/run.sh, which builds the binaries and installs the
baselines first. Every server is started here on a free port (port 0, the
address is read from its first line of output), gets a fresh process for
each scenario, and is stopped with SIGTERM. Servers of one scenario run back
to back so they share the machine's conditions as closely as possible.
"""

import argparse
import json
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHES = ROOT / "benches"
GROUPCAST = os.environ.get("GROUPCAST_BIN", str(BENCHES / "target/release/groupcast"))
LOADGEN = os.environ.get("LOADGEN_BIN", str(BENCHES / "target/release/loadgen"))
NODE_SERVER = BENCHES / "baselines/node/server.js"
PYTHON = BENCHES / ".venv/bin/python"
PYTHON_SERVER = BENCHES / "baselines/python/server.py"

SERVERS = ["groupcast", "node-ws", "python-websockets"]
# groupcast serving wss:// with the test certificate of tests/fixtures/tls
# (EC P-256, for 127.0.0.1): the TLS cost scenario compares it with ws://.
WSS = "groupcast, wss://"
TLS_FIXTURES = ROOT / "tests/fixtures/tls"
# loadgen (and its probe process) trust this CA for wss:// URLs.
os.environ.setdefault("LOADGEN_TLS_CA", str(TLS_FIXTURES / "ec.crt"))
# In the cluster scenario: groupcast as one node, run next to the cluster
# runs so the ratio compares runs made under the same machine load.
SINGLE_NODE = "groupcast, 1 node"
# In the cluster scenario: the same two groupcast nodes meeting on a
# standalone Redis (`--bus redis://...`) instead of `groupcast channel`.
REDIS_CLUSTER = "groupcast, Redis bus"
# Scenario 5's second run, the one issue 18's target is read from.
IDLE_ONE_GROUP = "10,000 connections in one group, one message to all"


# ---------------------------------------------------------------------------
# Servers


class Proc:
    """A started server process and the address it printed."""

    def __init__(self, argv, pattern):
        self.argv = argv
        self.proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            # Its own process group (to signal the whole tree) but not its
            # own session: with the kernel's autogroup scheduling, a new
            # session is a new CPU-share group, which would give each server
            # process as much CPU as the whole load generator (a cluster's
            # three processes would starve it to a third of the machine).
            process_group=0,
        )
        deadline = time.monotonic() + 20
        line = ""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line and self.proc.poll() is not None:
                break
            match = re.search(pattern, line)
            if match:
                self.address = match.group(1)
                return
        self.stop()
        raise RuntimeError(f"{shlex.join(argv)} did not report its address (last line: {line!r})")

    @property
    def pid(self):
        return self.proc.pid

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Deployment:
    """One or more server processes under test: URLs and pids for loadgen."""

    def __init__(self, kind, cluster=False):
        self.procs = []
        self.urls = []
        if kind == SINGLE_NODE:
            kind, cluster = "groupcast", False
        try:
            if kind == REDIS_CLUSTER:
                # A throwaway redis-server on a free port, no persistence;
                # its CPU and RSS count with the nodes', as the channel
                # server's do.
                port = free_port()
                self._start(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", "/tmp"], r"(Ready to accept connections)")
                for _ in range(2):
                    self._start_node([GROUPCAST, "serve", "--listen", "127.0.0.1:0",
                                      "--bus", f"redis://127.0.0.1:{port}", "--workers", "1"])
                # The nodes connect to Redis in the background.
                time.sleep(0.5)
            elif cluster:
                # The seed's layout: a channel server and two websocket
                # processes joined through it (the baselines use groupcast's
                # channel server, which speaks the seed's framing).
                channel = self._start([GROUPCAST, "channel", "--listen", "127.0.0.1:0"], r"channel=(\S+)")
                for _ in range(2):
                    if kind == "groupcast":
                        # One runtime thread per node: two nodes on this
                        # 2-core machine, one per core, as the seed runs one
                        # worker process per core (and as the single-threaded
                        # baselines run); two threads each oversubscribe the
                        # cores (measured: 3.4-3.6 M deliveries/s with two,
                        # 5.1-5.8 M with one).
                        self._start_node([GROUPCAST, "serve", "--listen", "127.0.0.1:0", "--channel", channel.address,
                                          "--workers", "1"])
                    elif kind == "node-ws":
                        self._start_node(["node", str(NODE_SERVER), "0", "127.0.0.1", channel.address])
                    elif kind == "python-websockets":
                        self._start_node([str(PYTHON), str(PYTHON_SERVER), "0", "127.0.0.1", channel.address])
                    else:
                        raise ValueError(kind)
            elif kind == "groupcast":
                self._start_node([GROUPCAST, "serve", "--listen", "127.0.0.1:0", "--channel-listen", "127.0.0.1:0"])
            elif kind == WSS:
                self._start_node([GROUPCAST, "serve", "--listen", "127.0.0.1:0", "--channel-listen", "127.0.0.1:0",
                                  "--tls-cert", str(TLS_FIXTURES / "ec.crt"),
                                  "--tls-key", str(TLS_FIXTURES / "ec-sec1.key")], scheme="wss")
            elif kind == "node-ws":
                self._start_node(["node", str(NODE_SERVER), "0", "127.0.0.1"])
            elif kind == "python-websockets":
                self._start_node([str(PYTHON), str(PYTHON_SERVER), "0", "127.0.0.1"])
            else:
                raise ValueError(kind)
        except Exception:
            self.stop()
            raise

    def _start(self, argv, pattern):
        proc = Proc(argv, pattern)
        self.procs.append(proc)
        return proc

    def _start_node(self, argv, scheme="ws"):
        proc = self._start(argv, r"websocket=(\S+)")
        self.urls.append(f"{scheme}://{proc.address}")

    @property
    def pids(self):
        return [p.pid for p in self.procs]

    def stop(self):
        for proc in reversed(self.procs):
            proc.stop()


def free_port():
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def loadgen(deployment, args, label, timeout=180):
    argv = [LOADGEN, "run", "--label", label]
    for url in deployment.urls:
        argv += ["--url", url]
    argv += ["--server-pid", ",".join(map(str, deployment.pids))]
    argv += [str(a) for a in args]
    started = time.monotonic()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"label": label, "failed": f"loadgen timed out after {timeout}s"}
    sys.stderr.write(done.stderr)
    lines = [l for l in done.stdout.splitlines() if l.startswith("{")]
    if not lines:
        return {"label": label, "failed": (done.stderr.strip().splitlines() or ["no output"])[-1]}
    result = json.loads(lines[-1])
    result["exit_code"] = done.returncode
    result["elapsed_s"] = time.monotonic() - started
    return result


# ---------------------------------------------------------------------------
# Scenarios

COMMON = ["--duration", "3", "--probes", "4"]


def scenarios(smoke):
    if smoke:
        return [
            dict(
                id="smoke",
                title="Smoke: paced fan-out, 200 members, 2 senders x 100 msg/s",
                servers=["groupcast"],
                runs=[("200 members, 2 x 100 msg/s, 64 B",
                       ["--mode", "paced", "--members", "200", "--senders", "2", "--rate", "100",
                        "--duration", "2", "--probes", "2"])],
            )
        ]
    # The window (messages in flight) bounds how many frames can wait for
    # each member, hence how many one write can carry: 256 lets a server
    # batch; the 16-message row shows the cost when it cannot.
    flood = []
    for members in (1000, 5000):
        for size in (64, 1024):
            flood.append((
                f"{members} members, {'64 B' if size == 64 else '1 KiB'}",
                ["--mode", "flood", "--members", members, "--senders", "1", "--size", size,
                 "--window", "256", *COMMON],
            ))
    flood.append((
        "1000 members, 64 B, 16-message window",
        ["--mode", "flood", "--members", "1000", "--senders", "1", "--size", "64",
         "--window", "16", *COMMON],
    ))
    return [
        dict(
            id="flood",
            title="1. Flood fan-out: 1 sender, one group, as fast as a window of 256 messages in flight allows",
            target="groupcast ≤ 0.3 µs server CPU per delivery at 1000 and at 5000 members.",
            servers=SERVERS,
            runs=flood,
        ),
        dict(
            id="paced",
            title="2. Paced fan-out",
            target="250,000 deliveries/s (1000 members × 5 senders × 50 msg/s): ≤ 1.5 µs per delivery, "
                   "nothing lost, probe p99 ≤ 5 ms. 10,000 deliveries/s (100 members × 100 msg/s): p99 ≤ 1 ms.",
            servers=SERVERS,
            runs=[
                ("1000 members, 5 senders × 50 msg/s (250k deliveries/s)",
                 ["--mode", "paced", "--members", "1000", "--senders", "5", "--rate", "50", *COMMON]),
                ("1000 members, 1 sender × 50 msg/s (50k deliveries/s)",
                 ["--mode", "paced", "--members", "1000", "--senders", "1", "--rate", "50", *COMMON]),
                ("100 members, 1 sender × 100 msg/s (10k deliveries/s)",
                 ["--mode", "paced", "--members", "100", "--senders", "1", "--rate", "100", *COMMON]),
            ],
        ),
        dict(
            id="groups",
            title="3. Many groups: 1,000 groups of 10 each with a sender; and one busy group beside 9,000 bystanders",
            target="Cost grows with the members of a group, not with the number of groups or of connections "
                   "outside the target group (compare the second run with scenario 2's 250k run).",
            servers=SERVERS,
            runs=[
                ("1000 groups × 10, 1000 senders × 10 msg/s (100k deliveries/s)",
                 ["--mode", "paced", "--groups", "1000", "--members", "10", "--senders", "1",
                  "--senders-are-members", "--rate", "10", *COMMON]),
                # Bystanders: connections in 900 groups of 10 that nobody
                # sends to; they must receive nothing and cost nothing.
                ("1000 members, 5 senders × 50 msg/s, 9,000 bystanders in 900 other groups",
                 ["--mode", "paced", "--members", "1000", "--senders", "5", "--rate", "50",
                  "--bystanders", "9000", *COMMON]),
            ],
        ),
        dict(
            id="cluster",
            title="4. Cluster: 2 nodes (one runtime thread each) + `groupcast channel`, members split across the nodes, sender on node A",
            target="≥ 80% of single-node deliveries/s.",
            servers=[SINGLE_NODE, SERVERS[0], REDIS_CLUSTER, *SERVERS[1:]],
            cluster=True,
            runs=[
                ("1000 members, flood, 64 B",
                 ["--mode", "flood", "--members", "1000", "--senders", "1", "--size", "64", "--window", "256", *COMMON]),
                ("1000 members, 5 senders × 50 msg/s",
                 ["--mode", "paced", "--members", "1000", "--senders", "5", "--rate", "50", *COMMON]),
            ],
        ),
        dict(
            id="idle",
            title="5. Idle memory: 10,000 connections joined, never received, then received one message each and idle again; grown to 19,000",
            target="≤ 4 KiB per idle connection joined, never received; 19,000 connections held within the fd limit "
                   "(issue 5). ≤ 2.5 KiB per connection received, then idle (issue 18).",
            servers=SERVERS,
            runs=[
                ("10,000 idle connections, hold 19,000",
                 ["--mode", "idle", "--groups", "1000", "--members", "10", "--probes", "0", "--hold", "19000"]),
                # The issue's own measure: one group, one message reaches
                # all 10,000 at once, then every connection sits idle.
                (IDLE_ONE_GROUP,
                 ["--mode", "idle", "--groups", "1", "--members", "10000", "--probes", "0"]),
            ],
        ),
        dict(
            id="hosts",
            title="6. Host hooks",
            target_label="Goal for Python",
            target=f"≥ {PYTHON_NOOP_GOAL:,} no-op `on_message` calls per second.",
            # groupcast only: the hosts are groupcast embedded in C, PHP
            # and Python, measured by their own scripts (measure_hosts).
            servers=["groupcast"],
            runs=[],
            measure=measure_hosts,
        ),
        dict(
            id="tls",
            title="7. TLS cost: flood fan-out over wss:// against ws://, the same node, the same run",
            target_label="What to expect (issue 14)",
            target="wss:// costs what its encryption costs: each message is encrypted once per member "
                   "(TLS has no shared frames), so expect the CPU per delivery to grow with the message size.",
            servers=["groupcast", WSS],
            # Two rounds, ws and wss alternating, to see the noise.
            runs=[
                (f"1000 members, {name}, round {n}",
                 ["--mode", "flood", "--members", "1000", "--senders", "1", "--size", size,
                  "--window", "256", *COMMON])
                for n in (1, 2) for name, size in (("64 B", "64"), ("1 KiB", "1024"))
            ],
        ),
        dict(
            id="channel",
            title="8. Channel server: publishes and events forwarded by `groupcast channel` to 2, 4 and 8 subscriber nodes",
            target_label="Goal (issue 18)",
            target="the next bottleneck of a cluster as a number: how many publishes/s and events/s one "
                   "channel server forwards, and its CPU per event.",
            servers=["groupcast"],
            runs=[],
            measure=measure_channel,
        ),
    ]


# ---------------------------------------------------------------------------
# Scenario 6: host hooks, measured by the hosts' own scripts (they build the
# C and PHP hosts, or need the Python extension, which benches/run.sh
# installs into benches/.venv) and read back from the JSON they write.

# Modest sizes: the whole scenario, builds included, stays within a few
# minutes. One round of 4 s per host; a flood needs no longer to settle.
HOSTS_ARGS = ["64", "256", "4", "1"]
# The Python runs take about a second each at this size.
PYTHON_BENCH_ARGS = ["--messages", "1000000", "--clients", "4", "--workers", "2"]
PYTHON_NOOP_GOAL = 250_000
HOSTS_RUN = "messages a host handles per second"
PYTHON_RUN = "Python on_message"
HOST_NAMES = {
    "builtin": "built-in (Rust)",
    "c": "C callbacks",
    "php": "PHP poll",
}
PYTHON_KINDS = {
    "builtin": "built-in `send_to_group` to a one-member group (parse, fan-out, write back)",
    "python no-op": "Python `on_message` that does nothing",
    "python echo": "Python `on_message` echoing with `server.send`",
}


def relative(path):
    try:
        return str(Path(path).relative_to(ROOT))
    except ValueError:
        return str(path)


def run_script(argv, timeout):
    """Runs one of the hosts' scripts from the repo root; returns why it
    failed (its last line of stderr), or None."""
    print(f"== hosts: {shlex.join(argv)}", file=sys.stderr, flush=True)
    try:
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout}s"
    except OSError as error:
        return str(error)
    sys.stderr.write(done.stdout + done.stderr)
    if done.returncode == 0:
        return None
    lines = [l.strip() for l in done.stderr.splitlines() if l.strip()]
    return lines[-1] if lines else f"exit status {done.returncode}"


def measure_hosts():
    """Scenario 6: tests/c/measure-hosts.sh (built-in, C, PHP) and
    tests/python/bench_messages.py; one result row per host and round. A
    host that reported nothing is recorded as failed with the script's
    reason, so a missing PHP or extension shows in the report instead of
    stopping the suite."""
    out_dir = BENCHES / "results"
    out_dir.mkdir(exist_ok=True)
    rows = []
    load1 = loadavg()

    jsonl = out_dir / "hosts.jsonl"
    jsonl.unlink(missing_ok=True)
    argv = ["tests/c/measure-hosts.sh", "--json", relative(jsonl), *HOSTS_ARGS]
    reason = run_script(argv, timeout=600)
    reported = []
    if jsonl.exists():
        reported = [json.loads(l) for l in jsonl.read_text().splitlines() if l.strip()]
    for host, name in HOST_NAMES.items():
        mine = [m for m in reported if m["host"] == host] or [
            dict(round=1, load1=load1, failed=reason or "measure-hosts.sh reported nothing")]
        for m in mine:
            result = m.get("report") or {"failed": m.get("failed") or "no report"}
            result["round"] = m["round"]
            rows.append(dict(scenario="hosts", server=name, run=HOSTS_RUN, load1=m["load1"],
                             command=shlex.join(argv), result=result))

    report_path = out_dir / "hosts-python.json"
    report_path.unlink(missing_ok=True)
    argv = [str(PYTHON), "tests/python/bench_messages.py", *PYTHON_BENCH_ARGS, "--json", relative(report_path)]
    reason = run_script(argv, timeout=300)
    runs = json.loads(report_path.read_text())["runs"] if report_path.exists() else []
    argv[0] = relative(PYTHON)
    for kind in PYTHON_KINDS:
        run = next((r for r in runs if r["kind"] == kind), None) or dict(
            kind=kind, load1=load1, failed=reason or "bench_messages.py reported nothing")
        rows.append(dict(scenario="hosts", server=kind, run=PYTHON_RUN, load1=run["load1"],
                         command=shlex.join(argv), result=run))
    return rows


# ---------------------------------------------------------------------------
# Scenario 7: the channel server's own forwarding rate. `loadgen channel`
# speaks the channel protocol directly: subscriber connections stand in for
# the nodes of a cluster, one publisher publishes 64 B messages as fast as
# a window of 4096 publishes in flight allows.

CHANNEL_SUBSCRIBERS = (2, 4, 8)
# Body encodings measured: groupcast's JSON, and PHP `serialize()` (what
# Workerman's Channel\Client sends).
CHANNEL_DIALECTS = ("json", "php")
CHANNEL_RUN = "forwarding"


def measure_channel():
    rows = []
    for dialect in CHANNEL_DIALECTS:
        for subscribers in CHANNEL_SUBSCRIBERS:
            args = ["--dialect", dialect, "--subscribers", subscribers, "--publishers", "1",
                    "--size", "64", "--duration", "3"]
            label = f"channel/{dialect}/{subscribers} subscribers"
            load1 = loadavg()
            print(f"== {label}", file=sys.stderr, flush=True)
            try:
                server = Proc([GROUPCAST, "channel", "--listen", "127.0.0.1:0"], r"channel=(\S+)")
            except Exception as error:
                result = {"label": label, "failed": f"server did not start: {error}"}
            else:
                argv = [LOADGEN, "channel", "--label", label, "--addr", server.address,
                        "--server-pid", str(server.pid), *[str(a) for a in args]]
                try:
                    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
                    sys.stderr.write(done.stderr)
                    lines = [l for l in done.stdout.splitlines() if l.startswith("{")]
                    result = json.loads(lines[-1]) if lines else {
                        "label": label, "failed": (done.stderr.strip().splitlines() or ["no output"])[-1]}
                except subprocess.TimeoutExpired:
                    result = {"label": label, "failed": "loadgen timed out"}
                finally:
                    server.stop()
            result.setdefault("dialect", dialect)
            result.setdefault("subscribers", subscribers)
            rows.append(dict(scenario="channel", server="groupcast", run=CHANNEL_RUN, load1=load1,
                             command=" ".join(str(a) for a in args), result=result))
    return rows


def table_channel(results):
    out = ["| body encoding | subscribers | publishes/s | events/s | server µs CPU / event | server cores (kernel share) "
           "| server RSS (MiB) | generator cores | lost | load |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in results:
        if row["scenario"] != "channel":
            continue
        r = row["result"]
        if "failed" in r:
            out.append(f"| {r['dialect']} | {r['subscribers']} | failed: {r['failed']} | | | | | | | |")
            continue
        lost = f"**{r['lost']:,}**" if r["lost"] else "0"
        out.append(
            f"| {r['dialect']} | {r['subscribers']} | {r['publishes_per_s']:,.0f} | {r['events_per_s']:,.0f} "
            f"| {r['server_cpu_us_per_event']:.3f} | {r['server_cpu_util']:.2f} ({100 * r['server_sys_fraction']:.0f}%) "
            f"| {r['server_rss_kib'] / 1024:.1f} | {r['generator_cpu_util']:.2f} | {lost} of {r['expected_events']:,} "
            f"| {row['load1']:.1f} |")
    out += ["", "`php`: PHP `serialize()` bodies, as Workerman's `Channel\\Client` sends them, publishers and "
            "subscribers alike. Against a PHP channel server: the section on the two dialects below.", "",
            "loadgen arguments: `benches/target/release/loadgen channel --addr ADDR --server-pid PID "
            "--dialect json|php --subscribers N --publishers 1 --size 64 --duration 3` (window 4096 publishes).", ""]
    return out


# ---------------------------------------------------------------------------
# Report


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception:
        return "?"


def machine():
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": sh("nproc"),
        "cpu": cpu,
        "kernel": platform.release(),
        "memory": sh("free -g | awk '/Mem:/ {print $2 \" GiB\"}'"),
        "rustc": sh("rustc --version"),
        "node": sh("node --version"),
        "ws": sh(f"node -e \"console.log(require('{BENCHES}/baselines/node/node_modules/ws/package.json').version)\""),
        "python": sh(f"{PYTHON} --version"),
        # The hosts of section 6.
        "php": sh("php -r 'echo PHP_VERSION;'"),
        "cc": sh("cc --version | head -n1"),
        "websockets": sh(f"{PYTHON} -c 'import websockets; print(websockets.__version__)'"),
        "commit": os.environ.get("GROUPCAST_COMMIT") or (
            sh(f"git -C {ROOT} rev-parse --short HEAD")
            + (" (+ uncommitted changes)" if sh(f"git -C {ROOT} status --porcelain --untracked-files=no -- src Cargo.toml") else "")),
        "load_before": sh("cat /proc/loadavg"),
    }


def fmt(value, digits=2):
    if value is None:
        return "–"
    if isinstance(value, float):
        if value >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def ratio(base, value):
    if not base or value is None:
        return "–"
    return f"{value / base:.1f}×"


def table_runs(scenario, results):
    idle = scenario["id"] == "idle"
    out = []
    for label, _ in scenario["runs"]:
        rows = [r for r in results if r["scenario"] == scenario["id"] and r["run"] == label]
        out.append(f"**{label}**\n")
        if idle:
            # Two rows per server: the connections joined and never sent
            # anything, then the same connections after each received one
            # message (the join check's sync message) and went idle again.
            out.append("| server | state | KiB per idle connection | vs groupcast | RSS before → at 10,000 (MiB) | joins verified | held at 19,000 | RSS at 19,000 (MiB) | load |")
            out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|")
            base = next((r["result"].get("idle", {}) or {} for r in rows if r["server"] == "groupcast"), {})
            for row in rows:
                res = row["result"]
                i = res.get("idle")
                if not i:
                    out.append(f"| {row['server']} | | failed: {res.get('failed', '?')} | | | | | | |")
                    continue
                held = f"{i['held']:,} / {i['hold_target']:,}" if i["hold_target"] else "–"
                at_hold = f"{i['rss_at_hold_kib'] / 1024:.1f}" if i["hold_target"] else "–"
                out.append(
                    f"| {row['server']} | joined, never received | {i['kib_per_connection']:.1f} "
                    f"| {ratio(base.get('kib_per_connection'), i['kib_per_connection'])} "
                    f"| {i['rss_before_kib'] / 1024:.1f} → {i['rss_after_kib'] / 1024:.1f} | {i['joined_verified']:,} / {i['connections']:,} "
                    f"| {held} | {at_hold} | {row['load1']:.1f} |"
                )
                if "kib_per_connection_after_traffic" in i:
                    after = i["kib_per_connection_after_traffic"]
                    out.append(
                        f"| {row['server']} | received, then idle | {after:.1f} "
                        f"| {ratio(base.get('kib_per_connection_after_traffic'), after)} "
                        f"| {i['rss_before_kib'] / 1024:.1f} → {i['rss_after_traffic_kib'] / 1024:.1f} | | | | |"
                    )
        else:
            out.append("| server | deliveries/s | server µs CPU / delivery | vs groupcast | server cores (kernel share) | server RSS (MiB) | probe p50 / p99 / p99.9 (ms) | generator cores | lost | load |")
            out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
            base = next((r["result"].get("server_cpu_us_per_delivery") for r in rows if r["server"] == "groupcast"), None)
            for row in rows:
                res = row["result"]
                if "failed" in res:
                    out.append(f"| {row['server']} | failed: {res['failed']} | | | | | | | | |")
                    continue
                p = res.get("probe") or {}
                lat = f"{p.get('p50_us', 0) / 1000:.2f} / {p.get('p99_us', 0) / 1000:.2f} / {p.get('p999_us', 0) / 1000:.2f}" if p else "–"
                lost = res["lost"]
                lost_text = f"**{lost:,}** of {res['expected_deliveries']:,}" if lost else f"0 of {res['expected_deliveries']:,}"
                out.append(
                    f"| {row['server']} | {res['deliveries_per_s']:,.0f} | {res['server_cpu_us_per_delivery']:.3f} "
                    f"| {ratio(base, res['server_cpu_us_per_delivery'])} | {res['server_cpu_util']:.2f} ({100 * res.get('server_sys_fraction', 0):.0f}%) "
                    f"| {res['server_rss_kib'] / 1024:.1f} | {lat} | {res['generator_cpu_util']:.2f} | {lost_text} | {row['load1']:.1f} |"
                )
        cmd = next((row["command"] for row in rows), None)
        if cmd:
            out.append(f"\nloadgen arguments: `{cmd}`\n")
    return out


def spread(values, fmt_one):
    """One value, or the range over rounds."""
    low, high = min(values), max(values)
    return fmt_one(low) if fmt_one(low) == fmt_one(high) else f"{fmt_one(low)}-{fmt_one(high)}"


def table_hosts(results):
    """Section 6: the hosts against built-in handling, from measure_hosts."""
    rows = [r for r in results if r["scenario"] == "hosts" and r["run"] == HOSTS_RUN]
    command = next((r["command"] for r in rows), shlex.join(["tests/c/measure-hosts.sh", *HOSTS_ARGS]))
    args = dict(zip(("groups", "window", "seconds", "rounds"), shlex.split(command)[-4:]))
    rounds = max((r["result"].get("round", 1) for r in rows), default=1)
    out = [
        f"**Messages a host handles per second** (`{command}`): {args['groups']} senders, each the only",
        f"member of its own group, flood `send_to_group` with {args['window']} messages in flight for",
        f"{args['seconds']} s (benches/loadgen flood mode, 64 B); every message crosses the host once.",
        "Built-in: the `groupcast` binary; C: `examples/c/seed.c` (built-ins off, the protocol in an",
        "`on_message` callback on the host thread); PHP: `examples/php/seed.php` (built-ins off, polled",
        "256 events at a time). The hosts are measured in turn, so a busy machine affects them alike;",
        "**vs built-in** is a host's messages/s (mean over rounds) over built-in handling's.",
        "",
        f"| host | msg/s{f', rounds 1-{rounds}' if rounds > 1 else ''} | server µs CPU / message | vs built-in "
        "| server cores | lost | load |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]

    def rate(name):
        ok = [r["result"] for r in rows if r["server"] == name and "failed" not in r["result"]]
        return sum(r["deliveries_per_s"] for r in ok) / len(ok) if ok else None

    base = rate(HOST_NAMES["builtin"])
    for name in HOST_NAMES.values():
        mine = [r for r in rows if r["server"] == name]
        ok = [r for r in mine if "failed" not in r["result"]]
        bad = [r for r in mine if "failed" in r["result"]]
        failures = "; ".join(
            (f"round {r['result']['round']} " if rounds > 1 else "") + f"failed: {r['result']['failed']}" for r in bad)
        if not ok:
            out.append(f"| {name} | {failures or 'failed: not measured'} | | | | | |")
            continue
        res = [r["result"] for r in ok]
        rates = " / ".join(f"{r['deliveries_per_s']:,.0f}" for r in res) + (f" ({failures})" if failures else "")
        mean = rate(name)
        lost = sum(r["lost"] for r in res)
        out.append(
            f"| {name} | {rates} | {spread([r['server_cpu_us_per_delivery'] for r in res], lambda v: f'{v:.1f}')} "
            f"| {f'{mean / base:.2f}×' if base else '–'} | {spread([r['server_cpu_util'] for r in res], lambda v: f'{v:.2f}')} "
            f"| {f'**{lost:,}**' if lost else 0} | {spread([r['load1'] for r in ok], lambda v: f'{v:.1f}')} |"
        )

    rows = {r["server"]: r for r in results if r["scenario"] == "hosts" and r["run"] == PYTHON_RUN}
    command = next((r["command"] for r in rows.values()), "tests/python/bench_messages.py")
    out += [
        "",
        f"**Python** (`{command}`; benches/run.sh installs the extension, built from this tree in release,",
        "into benches/.venv): raw-socket clients send pre-encoded frames, so the figure is the server's.",
        "",
        "| handling | messages/s | vs built-in | load |",
        "|---|---:|---:|---:|",
    ]
    base = (rows.get("builtin") or {}).get("result", {}).get("messages_per_s")
    for kind, what in PYTHON_KINDS.items():
        row = rows.get(kind)
        if row is None or "failed" in row["result"]:
            reason = row["result"]["failed"] if row else "not measured"
            out.append(f"| {what} | failed: {reason} | | |")
            continue
        value = row["result"]["messages_per_s"]
        out.append(f"| {what} | {value:,.0f} | {f'{value / base:.1f}×' if base else '–'} | {row['load1']:.1f} |")
    noop = (rows.get("python no-op") or {}).get("result", {}).get("messages_per_s")
    out.append("")
    if noop is not None:
        verdict = "met" if noop >= PYTHON_NOOP_GOAL else "**not met**"
        out.append(f"The goal for Python (≥ {PYTHON_NOOP_GOAL:,} no-op `on_message` calls per second) is {verdict}")
        out.append(f"in this run ({noop:,.0f}/s).")
    out += [
        "Events cross to the host thread in batches of up to 1024 under one GIL acquisition, so",
        "the per-call cost is mostly the call itself. The built-in path does more per message (parse,",
        "a group lookup, an encoded frame, a write back) than a no-op hook.",
    ]
    return out


def find(results, scenario, server, run_prefix):
    for r in results:
        if r["scenario"] == scenario and r["server"] == server and r["run"].startswith(run_prefix):
            return None if "failed" in r["result"] else r["result"]
    return None


def summary(results):
    """The targets (issue 5's, and section 6's goal for Python) against this run's groupcast figures."""
    rows = []

    def add(what, target, value, ok, baseline=""):
        mark = "–" if ok is None else ("yes" if ok else "**no**")
        rows.append(f"| {what} | {target} | {value} | {mark} | {baseline} |")

    def base(scenario, run, key, unit):
        out = []
        for server in ("node-ws", "python-websockets"):
            r = find(results, scenario, server, run)
            if r is not None:
                value = r["idle"][key] if key.startswith("kib_per_connection") else r[key]
                out.append(f"{server} {value:.1f} {unit}")
        return ", ".join(out)

    for members in (1000, 5000):
        for size in ("64 B", "1 KiB"):
            run = f"{members} members, {size}"
            r = find(results, "flood", "groupcast", run)
            if r:
                add(f"flood, {run}: server CPU per delivery", "≤ 0.3 µs", f"{r['server_cpu_us_per_delivery']:.2f} µs",
                    r["server_cpu_us_per_delivery"] <= 0.3, base("flood", run, "server_cpu_us_per_delivery", "µs"))
    run = "1000 members, 5 senders"
    r = find(results, "paced", "groupcast", run)
    if r:
        add("paced 250k deliveries/s: server CPU per delivery", "≤ 1.5 µs", f"{r['server_cpu_us_per_delivery']:.2f} µs",
            r["server_cpu_us_per_delivery"] <= 1.5, base("paced", run, "server_cpu_us_per_delivery", "µs"))
        add("paced 250k deliveries/s: lost", "0", f"{r['lost']:,}", r["lost"] == 0)
        p99 = (r.get("probe") or {}).get("p99_us", 0) / 1000
        add("paced 250k deliveries/s: probe p99", "≤ 5 ms", f"{p99:.2f} ms", p99 <= 5)
    alone = find(results, "paced", "groupcast", "1000 members, 5 senders")
    beside = find(results, "groups", "groupcast", "1000 members, 5 senders")
    if alone and beside:
        ratio = beside["server_cpu_us_per_delivery"] / alone["server_cpu_us_per_delivery"]
        add("paced 250k beside 9,000 bystanders: CPU per delivery vs alone", "≈ 1× (≤ 1.1×)",
            f"{ratio:.2f}×", ratio <= 1.1)
    run = "100 members, 1 sender"
    r = find(results, "paced", "groupcast", run)
    if r:
        p99 = (r.get("probe") or {}).get("p99_us", 0) / 1000
        add("paced 10k deliveries/s: probe p99", "≤ 1 ms", f"{p99:.2f} ms", p99 <= 1)
    r = find(results, "idle", "groupcast", "")
    if r and r.get("idle"):
        i = r["idle"]
        add("idle: RSS per joined connection at 10,000", "≤ 4 KiB", f"{i['kib_per_connection']:.1f} KiB",
            i["kib_per_connection"] <= 4, base("idle", "", "kib_per_connection", "KiB"))
        add("connections held", "19,000", f"{i['held']:,}", i["held"] >= 19000)
    r = find(results, "idle", "groupcast", IDLE_ONE_GROUP)
    if r and r.get("idle") and "kib_per_connection_after_traffic" in r["idle"]:
        after = r["idle"]["kib_per_connection_after_traffic"]
        add("idle: RSS per connection at 10,000 in one group, received one message, then idle", "≤ 2.5 KiB",
            f"{after:.1f} KiB", after <= 2.5, base("idle", IDLE_ONE_GROUP, "kib_per_connection_after_traffic", "KiB"))
    for run in ("1000 members, flood", "1000 members, 5 senders"):
        single, cluster = find(results, "cluster", SINGLE_NODE, run), find(results, "cluster", "groupcast", run)
        if single and cluster:
            pct = 100 * cluster["deliveries_per_s"] / single["deliveries_per_s"]
            add(f"cluster, {run}: deliveries/s vs one node", "≥ 80%", f"{pct:.0f}%", pct >= 80)
        redis = find(results, "cluster", REDIS_CLUSTER, run)
        if single and redis:
            pct = 100 * redis["deliveries_per_s"] / single["deliveries_per_s"]
            add(f"cluster on Redis, {run}: deliveries/s vs one node", "≥ 80%", f"{pct:.0f}%", pct >= 80)
    # Section 6's goal for the Python host; the baseline column has the
    # built-in handling of the same run for scale.
    noop = find(results, "hosts", "python no-op", PYTHON_RUN)
    if noop:
        builtin = find(results, "hosts", "builtin", PYTHON_RUN)
        add("Python host: no-op `on_message` calls per second", f"≥ {PYTHON_NOOP_GOAL:,}",
            f"{noop['messages_per_s']:,.0f}", noop["messages_per_s"] >= PYTHON_NOOP_GOAL,
            f"built-in handling {builtin['messages_per_s']:,.0f}/s" if builtin else "")
    elif any(r["scenario"] == "hosts" for r in results):
        failed = next((r["result"].get("failed") for r in results
                       if r["scenario"] == "hosts" and r["server"] == "python no-op"), None)
        add("Python host: no-op `on_message` calls per second", f"≥ {PYTHON_NOOP_GOAL:,}",
            f"failed: {failed or 'not measured'}", False)
    if not rows:
        return []
    return [
        "## Targets at a glance",
        "",
        "| what | target | groupcast | met | baselines, same run |",
        "|---|---|---:|:---:|---|",
        *rows,
        "",
        "![server CPU per delivery](benches/cpu_per_delivery.svg)",
        "",
    ]


def svg_plot(results, path):
    """Horizontal bars: server µs CPU per delivery, per run and server."""
    colors = {"groupcast": "#2b8a3e", "node-ws": "#1c7ed6", "python-websockets": "#e67700"}
    runs = []
    for r in results:
        key = (r["scenario"], r["run"])
        if r["scenario"] in ("idle", "smoke", "hosts", "channel") or key in runs:
            continue
        runs.append(key)
    rows = []
    for scenario, run in runs:
        for server in SERVERS:
            res = find(results, scenario, server, run)
            if res is not None:
                rows.append((f"{scenario}: {run}", server, res["server_cpu_us_per_delivery"]))
    if not rows:
        return
    top = max(v for _, _, v in rows)
    bar_h, label_w, plot_w = 14, 430, 420
    height = 40 + len(rows) * (bar_h + 4) + len(runs) * 8
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + plot_w + 80}" height="{height}" '
           'font-family="sans-serif" font-size="11">',
           '<rect width="100%" height="100%" fill="white"/>',
           f'<text x="10" y="18" font-size="13" font-weight="bold">Server CPU per delivery (µs, lower is better)</text>']
    y = 34
    last = None
    for run, server, value in rows:
        if run != last:
            y += 8
            out.append(f'<text x="10" y="{y + 11}">{html_escape(run)}</text>')
            last = run
        width = max(1, plot_w * value / top)
        out.append(f'<rect x="{label_w}" y="{y}" width="{width:.1f}" height="{bar_h}" fill="{colors[server]}"/>')
        out.append(f'<text x="{label_w + width + 4:.1f}" y="{y + 11}">{value:.2f} {server}</text>')
        y += bar_h + 4
    out.append("</svg>")
    Path(path).write_text("\n".join(out) + "\n")


def html_escape(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")



def write_markdown(path, results, info, command, scenario_list, started, finished):
    lines = [
        "# groupcast benchmarks",
        "",
        "Generated by the benchmark suite; do not edit by hand. Every figure below comes from one run of",
        "",
        "```",
        command,
        "```",
        "",
        f"run from {started} to {finished} (UTC), groupcast commit {info['commit']}.",
        "",
        *summary(results),
        "## Machine",
        "",
        f"- `nproc`: {info['nproc']}, CPU: {info['cpu']}, memory: {info['memory']}",
        f"- kernel: {info['kernel']}; load average before the run: {info['load_before']}",
        f"- {info['rustc']}; Node {info['node']} with ws {info['ws']}; {info['python']} with websockets {info['websockets']}",
        *([f"- hosts of section 6: PHP {info.get('php') or '–'}, {info.get('cc') or 'no cc'}"]
          if any(s["id"] == "hosts" for s in scenario_list) else []),
        "",
        "The load generator and the servers share these cores, and the machine is shared with other",
        "work, so absolute throughput moves between runs: read the **ratios** between servers measured",
        "in the same run, and the server CPU per delivery, which does not depend on how fast the",
        "generator reads.",
        "",
        "## How it is measured",
        "",
        "- `benches/loadgen` (Rust, tokio + tokio-tungstenite) opens the member and sender connections;",
        "  a few **probe** connections run in a separate `loadgen probe` process so latency is not",
        "  inflated by the bulk receivers' own queueing. Each message carries its CLOCK_MONOTONIC send time.",
        "- Joins are confirmed before measuring: sync messages are sent to every group until every member",
        "  and probe has received one.",
        "- **server µs CPU / delivery**: utime+stime from `/proc/<pid>/stat`, summed over the server's process",
        "  tree (all nodes and the channel server in the cluster scenario), from the first data message to",
        "  the last delivery, divided by deliveries. **server cores** is that CPU over the same wall time.",
        "- **server RSS**: VmRSS summed over the tree at the end. **generator cores**: the bulk generator",
        "  process's own CPU over the same time; near 2.0 means the run was bounded by the generator, not the server.",
        "- **load**: the machine's 1-minute load average when the run started (other work included);",
        "  a run with load well above 2 was sharing the cores and its wall-clock figures suffer.",
        "- **lost** = expected deliveries − received (bulk members + probes); must be 0.",
        "- **vs groupcast**: the server's CPU per delivery (or KiB per connection) divided by groupcast's;",
        "  above 1× means groupcast spends less.",
        "- Flood: the sender keeps at most 256 messages in flight (sent and not yet received by every member;",
        "  16 in the row that says so), so no server is pushed into dropping slow consumers; deliveries/s there",
        "  is mostly bounded by the generator reading 1000-5000 copies of each message on the same 2 cores.",
        "  The window also bounds how many frames wait for a member, hence how many one write can carry.",
        "",
    ]
    for scenario in scenario_list:
        lines.append(f"## {scenario['title']}")
        lines.append("")
        if scenario.get("target"):
            lines.append(f"{scenario.get('target_label', 'Target (issue 5)')}: {scenario['target']}")
            lines.append("")
        if scenario["id"] == "cluster":
            lines += cluster_notes(results)
        if scenario["id"] == "hosts":
            lines += table_hosts(results)
        elif scenario["id"] == "channel":
            lines += table_channel(results)
        else:
            lines += table_runs(scenario, results)
        lines.append("")
    lines += scale_on_paper(results, info)
    findings = BENCHES / "FINDINGS.md"
    if findings.exists():
        lines += [findings.read_text().rstrip(), ""]
    # Figures measured apart from this suite, each by its own script or
    # A/B, with the command that produced them, kept by hand in these files:
    # the Redis bus (it needs redis-server and a Redis Cluster), the channel
    # server's dialects against a PHP channel server, presence, group
    # history, and the TLS code on the plain path.
    for name in ("REDIS.md", "WORKERMAN.md", "PRESENCE.md", "HISTORY.md", "TLS.md"):
        kept = BENCHES / name
        if kept.exists():
            lines += [kept.read_text().rstrip(), ""]
    lines += [
        "## Running it",
        "",
        "```",
        "bash benches/run.sh            # sections 1-8 and the scale plan, about 14 minutes; rewrites BENCHMARKS.md",
        "bash benches/run.sh --only flood,paced   # a subset (ids: flood, paced, groups, cluster, channel, idle, hosts, tls)",
        "bash benches/run.sh --smoke    # ~10 s, groupcast only; exit status 1 if anything was lost",
        "python3 benches/run.py --render   # rewrite this file from benches/results/latest.json",
        "```",
        "",
        "One scenario by hand, against any server speaking the protocol:",
        "",
        "```",
        "benches/target/release/loadgen run --url ws://127.0.0.1:1234 --server-pid PID \\",
        "    --mode paced --members 1000 --senders 5 --rate 50 --duration 3",
        "```",
        "",
        "Raw results of the last run: `benches/results/latest.json` (not committed).",
        "",
    ]
    Path(path).write_text("\n".join(lines))


# The node of the paper plan, and the share of its memory given to
# connections (the rest: the OS, page cache, bursts' queues).
PAPER_CORES, PAPER_GIB, PAPER_MEMORY_SHARE = 16, 64, 0.75


def scale_on_paper(results, info):
    """Issue 18's plan: what one 16-core / 64 GiB node holds and delivers,
    from this run's per-connection memory and per-delivery CPU, and what
    this machine's fd limit hides."""
    idle = find(results, "idle", "groupcast", IDLE_ONE_GROUP)
    hold = find(results, "idle", "groupcast", "10,000 idle connections")
    flood = find(results, "flood", "groupcast", "1000 members, 64 B")
    flood_1k = find(results, "flood", "groupcast", "1000 members, 1 KiB")
    paced = find(results, "paced", "groupcast", "1000 members, 5 senders")
    if not (idle and idle.get("idle") and hold and hold.get("idle")):
        return []
    i, h = idle["idle"], hold["idle"]
    kib = i["kib_per_connection_after_traffic"]
    # Both ends of every loopback connection are sockets of this machine.
    slab_conns = 2 * i["connections"]
    kernel = max(0.0, (i.get("slab_after_kib", 0) - i.get("slab_before_kib", 0)) / slab_conns) if slab_conns else 0.0
    budget_kib = PAPER_GIB * PAPER_MEMORY_SHARE * 1024 * 1024
    by_groupcast = budget_kib / kib
    by_both = budget_kib / (kib + kernel) if kernel else by_groupcast
    fd_limit = sh("ulimit -Hn") or "?"
    machine_gib = float((info.get("memory") or "0").split()[0] or 0)
    out = [
        "## Scale on paper: one node of 16 cores / 64 GiB",
        "",
        "Computed by the suite from this run's figures (groupcast's rows above); a plan, not a measurement:",
        "this machine has 2 cores, and nothing here shows that 16 cores scale linearly.",
        "",
        "| what | from | one node of 16 cores / 64 GiB |",
        "|---|---|---:|",
        f"| idle connections, groupcast's memory only | {kib:.1f} KiB each (received, then idle; scenario 5), "
        f"{PAPER_MEMORY_SHARE:.0%} of 64 GiB | {by_groupcast / 1e6:,.1f} M |",
    ]
    if kernel:
        out.append(f"| idle connections, with the kernel's socket state | + {kernel:.1f} KiB per socket "
                   f"(slab growth over {slab_conns:,} loopback sockets, machine-wide, noisy) | {by_both / 1e6:,.1f} M |")
    for name, r in (("flood, 64 B", flood), ("flood, 1 KiB", flood_1k), ("paced 250k (one write per delivery)", paced)):
        if r:
            cpu = r["server_cpu_us_per_delivery"]
            out.append(f"| deliveries/s, {name} | {cpu:.2f} µs of server CPU per delivery (scenarios 1-2), "
                       f"{PAPER_CORES} cores | {PAPER_CORES / cpu:,.1f} M |")
    rss_hold = h["rss_at_hold_kib"] / 1024
    out += [
        "",
        f"**What this machine's fd limit hides.** The hard limit on open files here is {fd_limit}; scenario 5",
        f"held {h['held']:,} of {h['hold_target']:,} connections (one fd each) in {rss_hold:.0f} MiB of server RSS. At",
        f"{kib:.1f} KiB per connection, this machine's {machine_gib:.0f} GiB would hold "
        f"{machine_gib * PAPER_MEMORY_SHARE * 1024 * 1024 / (kib + kernel) / 1e6:,.1f} M connections "
        f"(with the kernel's share), and idle connections cost no CPU between heartbeats (one ping per 25 s each).",
        "So a node here is capped by the fd limit, at well under 1% of what its memory allows; groupcast itself",
        "sets no cap (`max_connections` is off by default). On a real node, raise `LimitNOFILE` / `ulimit -n`",
        "and `fs.nr_open` past the connections planned, and the ephemeral ports or source addresses of whatever",
        "connects (the load generator spreads over 127.0.0.2-9 for that reason).",
        "",
    ]
    return out


def cluster_notes(results):
    out = ["The baselines run as the seed's cluster does: two processes, each subscribed to the",
           "`send_to_group` channel of the same `groupcast channel` server, publishing every",
           "send_to_group there and delivering each event to their local members. Server CPU and RSS",
           "include the channel server. The row *groupcast, 1 node* is the single-node reference, run",
           "right before the cluster runs. In a flood the deliveries/s are bounded by the CPU share",
           "the generator and the servers get on this shared machine, so three server processes can",
           "come out above 100% of one; the paced run (fixed offered load) is the cleaner comparison,",
           "and the CPU per delivery shows what the channel hop costs. The row *groupcast, Redis bus* is the",
           "same two nodes meeting on a standalone redis-server (`--bus redis://...`) instead; its CPU and",
           "RSS include redis-server's.", ""]
    runs = {}
    for r in results:
        if r["scenario"] == "cluster" and "failed" not in r["result"]:
            runs.setdefault(r["run"], {})[r["server"]] = r["result"]
    for run, by_server in runs.items():
        single = by_server.get(SINGLE_NODE)
        for name, bus in (("groupcast", "channel server"), (REDIS_CLUSTER, "Redis server")):
            cluster = by_server.get(name)
            if single and cluster:
                out.append(
                    f"- {run}, through the {bus}: cluster {cluster['deliveries_per_s']:,.0f} deliveries/s vs one node "
                    f"{single['deliveries_per_s']:,.0f} = **{100 * cluster['deliveries_per_s'] / single['deliveries_per_s']:.0f}%**; "
                    f"server CPU per delivery {cluster['server_cpu_us_per_delivery']:.3f} µs vs {single['server_cpu_us_per_delivery']:.3f} µs."
                )
    out.append("")
    return out


# ---------------------------------------------------------------------------


def loadavg():
    return float(open("/proc/loadavg").read().split()[0])


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="one tiny scenario against groupcast only")
    parser.add_argument("--render", action="store_true",
                        help="rewrite BENCHMARKS.md from benches/results/latest.json without running anything")
    parser.add_argument("--only", help="comma-separated scenario ids: flood,paced,groups,cluster,channel,idle,hosts,tls")
    parser.add_argument("--servers", help="comma-separated subset of " + ",".join(SERVERS))
    parser.add_argument("--output", help="markdown report [default: BENCHMARKS.md, or benches/results/partial.md with --only/--servers]")
    args = parser.parse_args()

    if args.render:
        # Re-render the report of the last full run (after editing FINDINGS.md, say).
        saved = json.loads((BENCHES / "results/latest.json").read_text())
        chosen = [s for s in scenarios(False) if s["id"] in saved["scenarios"]]
        output = args.output or str(ROOT / "BENCHMARKS.md")
        svg_plot(saved["results"], BENCHES / "cpu_per_delivery.svg")
        write_markdown(output, saved["results"], saved["machine"], saved["command"], chosen,
                       saved["started"], saved["finished"])
        print(f"wrote {output}", file=sys.stderr)
        return 0
    selected = scenarios(args.smoke)
    if args.only:
        wanted = set(args.only.split(","))
        selected = [s for s in selected if s["id"] in wanted]
    servers_wanted = set(args.servers.split(",")) if args.servers else None

    if args.output is None:
        partial = args.only or args.servers
        args.output = str(BENCHES / "results/partial.md" if partial else ROOT / "BENCHMARKS.md")
    info = machine()
    started = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    results = []
    failed = False
    for scenario in selected:
        if "measure" in scenario:
            if servers_wanted and not servers_wanted & set(scenario["servers"]):
                continue
            print(f"== {scenario['id']}", file=sys.stderr, flush=True)
            rows = scenario["measure"]()
            # Every host is groupcast: a failure or a loss fails the run,
            # as it does for the groupcast rows of the other scenarios.
            failed = failed or any("failed" in r["result"] or r["result"].get("lost", 0) != 0 for r in rows)
            results += rows
            continue
        for label, run_args in scenario["runs"]:
            for server in scenario["servers"]:
                if servers_wanted and server.split(",")[0] not in servers_wanted:
                    continue
                name = f"{scenario['id']}/{server}/{label}"
                load1 = loadavg()
                print(f"== {name}", file=sys.stderr, flush=True)
                try:
                    deployment = Deployment(server, cluster=scenario.get("cluster", False))
                except Exception as error:
                    result = {"label": name, "failed": f"server did not start: {error}"}
                else:
                    try:
                        result = loadgen(deployment, run_args, name)
                    finally:
                        deployment.stop()
                    time.sleep(0.5)
                if "failed" in result or result.get("lost", 0) != 0 or result.get("exit_code", 0) != 0:
                    failed = failed or server.startswith("groupcast")
                results.append(dict(
                    scenario=scenario["id"], server=server, run=label, load1=load1,
                    command=" ".join(str(a) for a in run_args), result=result,
                ))
    finished = time.strftime("%Y-%m-%d %H:%M", time.gmtime())

    out_dir = BENCHES / "results"
    out_dir.mkdir(exist_ok=True)
    json_name = "smoke.json" if args.smoke else ("partial.json" if args.only or args.servers else "latest.json")
    command = "bash benches/run.sh" + ("" if len(sys.argv) == 1 else " " + shlex.join(sys.argv[1:]))
    (out_dir / json_name).write_text(json.dumps(dict(
        machine=info, results=results, started=started, finished=finished, command=command,
        scenarios=[s["id"] for s in selected]), indent=1))
    if args.smoke:
        for row in results:
            r = row["result"]
            print(f"smoke: {row['run']}: " + (f"FAILED {r['failed']}" if "failed" in r else
                  f"{r['received_deliveries']}/{r['expected_deliveries']} delivered, lost {r['lost']}, "
                  f"{r['server_cpu_us_per_delivery']:.2f} µs server CPU/delivery"))
        return 1 if failed else 0
    if args.output.endswith("BENCHMARKS.md"):
        svg_plot(results, BENCHES / "cpu_per_delivery.svg")
    write_markdown(args.output, results, info, command, selected, started, finished)
    print(f"wrote {args.output}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
