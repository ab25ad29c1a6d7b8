#!/usr/bin/env python3
"""Interleaved A/B of two tether binaries (and, for scale, HAProxy, nginx and direct) on one
scenario of compare.py, one worker each: requests/s, p99 and the proxy's CPU per request.

    python3 tools/bench/ab.py --old /tmp/tether-old --new build/tether [--rounds 5]
                              [--duration 3] [--scenario a] [--others haproxy,nginx,direct]

Each round runs wrk (compare.py's run_wrk: -t1, 64 connections) against every target in turn
(old, new, the others), so a change of the machine's load hits all of them alike; the medians
and the new/old ratios are printed. Requests/s swing with other load on a shared machine; CPU
per request (the proxy process's, from /proc) and the ratios within one run are the figures to
read. Starts its own processes, stops only those, by PID. Python 3.11 standard library only.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare  # noqa: E402  (configs, processes, wrk)

PATHS = {"a": ("/", False), "d": ("/", True)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    compare.add_tool_args(p, "backend", "nginx", "haproxy", "wrk")
    p.add_argument("--old", required=True, help="tether binary A")
    p.add_argument("--new", required=True, help="tether binary B")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--duration", type=int, default=3)
    p.add_argument("--scenario", default="a", choices=sorted(PATHS))
    p.add_argument("--others", default="haproxy,direct", help="also measured each round")
    a = p.parse_args()
    a.workers = 1
    a.tether = a.old
    compare.check_tool_args(p, a, "backend", "wrk")
    path, close = PATHS[a.scenario]
    tmp = Path(tempfile.mkdtemp(prefix="tether-ab-"))
    tmp.chmod(0o755)
    s = compare.Setup(a, tmp, compare.raise_nofile())
    print(f"# ab.py scenario {a.scenario}, load average {compare.load_average()}", flush=True)
    results: dict[str, list[dict]] = {}
    try:
        s.backend_port = compare.start_backend(s)
        targets: dict[str, tuple[int, int | None]] = {}
        for tag, binary in (("old", a.old), ("new", a.new)):
            a.tether = binary
            proc, port = compare.start_proxy(s, "tether", tag)
            targets[tag] = (port, proc.pid)
        for other in [x for x in a.others.split(",") if x]:
            if other == "direct":
                targets["direct"] = (s.backend_port, None)
            else:
                proc, port = compare.start_proxy(s, other)
                targets[other] = (port, proc.pid)
        for port, pid in targets.values():  # warm-up, discarded
            compare.run_wrk(s, port, pid, 1, path, close=close)
        for rnd in range(a.rounds):
            for tag, (port, pid) in targets.items():
                r = compare.run_wrk(s, port, pid, a.duration, path, close=close)
                results.setdefault(tag, []).append(r)
                cpu = f"{r['cpu_us_per_op']:6.2f}" if "cpu_us_per_op" in r else "     -"
                print(f"round {rnd + 1} {tag:8} req/s {r['rps']:9,.0f}  p99 ms {r['p99_ms']:6.2f}"
                      f"  cpu us/req {cpu}  errors {r['errors']}", flush=True)
    finally:
        compare.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)

    def med(tag: str, key: str) -> float | None:
        vals = [r[key] for r in results.get(tag, []) if key in r]
        return statistics.median(vals) if vals else None

    print(f"# medians of {a.rounds} rounds, load average at the end {compare.load_average()}")
    for tag in results:
        cpu = med(tag, "cpu_us_per_op")
        print(f"{tag:8} req/s {med(tag, 'rps'):9,.0f}  p99 ms {med(tag, 'p99_ms'):6.2f}  "
              f"cpu us/req {cpu if cpu is None else round(cpu, 2)}")
    for key in ("rps", "p99_ms", "cpu_us_per_op"):
        o, n = med("old", key), med("new", key)
        if o and n:
            print(f"new/old {key}: {n / o:.3f}")
    new_rps = med("new", "rps")
    for tag in results:
        if tag not in ("old", "new") and new_rps and med(tag, "rps"):
            print(f"new/{tag} rps: {new_rps / med(tag, 'rps'):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
