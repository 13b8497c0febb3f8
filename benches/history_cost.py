"""What group history costs (issue 17): flood and paced fan-out against
groupcast with history off and on, in the same run, alternating, repeated.

    bash benches/run.sh --only none   # builds groupcast and loadgen (once)
    python3 benches/history_cost.py [--repeat 3] [--layouts single,channel,redis]

Members join plainly (raw messages), so "on" measures numbering and keeping
every message (and, with the embedded channel server or Redis, the round
trip through it that orders a cluster's messages: on Redis one Lua script
per message). The Redis layout is one node on a redis-server of its own
(`--bus redis://...`; its CPU counts with the node's). Prints one markdown table: per
variant, deliveries/s and server CPU per delivery (median of the repeats),
and the ratio to history off on the same layout.
"""

import argparse
import statistics
import sys

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import run  # noqa: E402  (benches/run.py: Proc, loadgen)

LAYOUTS = {
    "single node (--no-channel)": ["--no-channel"],
    "embedded channel server (default serve)": ["--channel-listen", "127.0.0.1:0"],
    "Redis bus (--bus, one node)": ["--bus", "{redis}"],
}
# --layouts names for LAYOUTS, in order.
LAYOUT_NAMES = dict(zip(("single", "channel", "redis"), LAYOUTS))
RUNS = {
    "flood, 1000 members, 64 B": ["--mode", "flood", "--members", "1000", "--senders", "1", "--size", "64",
                                  "--window", "256", *run.COMMON],
    "paced, 1000 members, 5 x 50 msg/s": ["--mode", "paced", "--members", "1000", "--senders", "5",
                                          "--rate", "50", *run.COMMON],
}


class Node(run.Deployment):
    def __init__(self, extra):  # noqa: D107 (a single groupcast node)
        self.procs, self.urls = [], []
        if "{redis}" in extra:
            # A throwaway redis-server, as benches/run.py's Redis row.
            port = run.free_port()
            self._start(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                         "--appendonly", "no", "--dir", "/tmp"], r"(Ready to accept connections)")
            extra = [f"redis://127.0.0.1:{port}" if a == "{redis}" else a for a in extra]
        self._start_node([run.GROUPCAST, "serve", "--listen", "127.0.0.1:0", "--workers", "1", *extra])
        if any(a.startswith("redis://") for a in extra):
            run.time.sleep(0.5)  # the node reaches Redis in the background


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--layouts", default="single,channel,redis",
                        help="which layouts, comma-separated: single, channel, redis")
    args = parser.parse_args()
    layouts = {LAYOUT_NAMES[n]: LAYOUTS[LAYOUT_NAMES[n]] for n in args.layouts.split(",")}
    results = {}
    for round_ in range(args.repeat):
        for layout, layout_args in layouts.items():
            for name, load in RUNS.items():
                for history, extra in (("off", []), ("on", ["--history-size", "100"])):
                    node = Node(layout_args + extra)
                    try:
                        res = run.loadgen(node, load, f"{layout} {name} history {history}")
                    finally:
                        node.stop()
                    if "failed" in res:
                        print(f"round {round_}: {layout}, {name}, {history}: {res['failed']}", file=sys.stderr)
                        continue
                    results.setdefault((layout, name, history), []).append(res)
    print("| layout | run | history | deliveries/s | server CPU µs/delivery | CPU vs off | lost |")
    print("|---|---|---|---:|---:|---:|---:|")
    for layout in layouts:
        for name in RUNS:
            off = results.get((layout, name, "off"), [])
            off_cpu = statistics.median(r["server_cpu_us_per_delivery"] for r in off) if off else None
            for history in ("off", "on"):
                res = results.get((layout, name, history), [])
                if not res:
                    print(f"| {layout} | {name} | {history} | failed | | | |")
                    continue
                rate = statistics.median(r["deliveries_per_s"] for r in res)
                cpu = statistics.median(r["server_cpu_us_per_delivery"] for r in res)
                spread = ", ".join(f"{r['server_cpu_us_per_delivery']:.2f}" for r in res)
                lost = sum(r["lost"] for r in res)
                ratio = f"{cpu / off_cpu:.2f}×" if off_cpu else ""
                print(f"| {layout} | {name} | {history} | {rate:,.0f} | {cpu:.2f} ({spread}) | {ratio} | {lost} |")


if __name__ == "__main__":
    main()
