#!/usr/bin/env python3
"""Costs per proxied request that do not depend on the machine's load, for before/after comparisons.

    python3 tools/bench/per_request.py [--scenarios a,d,e] [--proxies tether,nginx,haproxy]
                                       [--duration 3] [--no-callgrind] [--no-syscalls]

Two measurements per scenario (a: keep-alive GET /, d: a new connection per request,
e: 1 MiB responses; wrk -t1, the connection counts of compare.py's scenarios a and d, and
4 connections for e):

- syscalls: each proxy (tether, nginx, HAProxy, from compare.py's configurations, one worker)
  runs under `perf stat -e raw_syscalls:sys_enter,syscalls:sys_enter_*,context-switches -p PID`
  during one wrk run; printed per request: all syscalls, the most frequent ones, and the
  proxy's context switches (each one a sleep and a wake-up).
- callgrind (tether only): tether runs under `valgrind --tool=callgrind`; its counters are
  zeroed after a warm-up and dumped after one wrk run (`callgrind_control`), and the dump
  gives instructions (Ir, user space only) and calls of malloc per request.

Instruction, allocation and syscall counts per request hardly move with other load on the
machine, unlike requests/s. Builds nothing (uses build/); starts its own processes, bounds
every wait, stops only what it started, by PID. Python 3.11 standard library only.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare  # noqa: E402  (Proc, configs: one definition of the setups)
import costs  # noqa: E402  (perf stat and callgrind counts)

PATHS = {"a": "/", "d": "/", "e": f"/bytes?n={1 << 20}"}
CONNS = {"a": compare.WRK_CONNS, "d": compare.WRK_CONNS, "e": 4}
NAMES = {"a": "keep-alive GET /", "d": "connection per request", "e": "1 MiB responses"}


def wrk(s: compare.Setup, key: str, port: int, d: int) -> int:
    """Runs wrk for d seconds; the number of requests it completed (errors raise)."""
    argv = [s.args.wrk, "-t1", f"-c{CONNS[key]}", f"-d{d}s"]
    if key == "d":
        argv += ["-H", "Connection: close"]
    argv.append(f"http://127.0.0.1:{port}{PATHS[key]}")
    r = subprocess.run(argv, capture_output=True, text=True, timeout=d + 60)
    if r.returncode != 0 or "requests in" not in r.stdout:
        raise RuntimeError(f"wrk failed ({r.returncode}): {r.stdout}{r.stderr}")
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", r.stdout):
        raise RuntimeError(f"wrk saw {m.group(1)} error responses: {r.stdout}")
    return int(re.search(r"(\d+) requests in", r.stdout).group(1))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    costs.add_args(p, "tether", "backend", "nginx", "haproxy", "wrk")
    p.add_argument("--scenarios", default="a,d,e")
    p.add_argument("--top", type=int, default=8, help="syscalls shown per proxy")
    a = p.parse_args()
    keys = [k for k in a.scenarios.split(",") if k]
    proxies = [x for x in a.proxies.split(",") if x]
    if bad := [k for k in keys if k not in PATHS] + [x for x in proxies if x not in compare.PROXIES]:
        p.error(f"unknown scenario or proxy: {bad}")
    with costs.session(a, "per_request.py") as s:
        if not a.no_syscalls:
            for name in proxies:
                s.procs[name], s.ports[name] = compare.start_proxy(s, name)
            for key in keys:
                for name in proxies:
                    r = costs.perf_syscalls(s, f"{name}-{key}", s.procs[name].pid, s.ports[name],
                                            lambda port, d: wrk(s, key, port, d), a.top)
                    top = ", ".join(f"{k} {v:.2f}" for k, v in r["top"])
                    print(f"{NAMES[key]:24} {name:8} syscalls/req {r['total']:6.2f}  "
                          f"ctx switches/req {r['switches']:5.2f}  ({r['units']} req; {top})",
                          flush=True)
        if not a.no_callgrind:
            for key in keys:
                r = costs.callgrind(s, f"callgrind-{key}", lambda port, d: wrk(s, key, port, d))
                print(f"{NAMES[key]:24} tether   instructions/req {r['ir']:10,.0f}  "
                      f"mallocs/req {r['mallocs']:7.2f}  ({r['units']} req under callgrind)",
                      flush=True)
    return 0

if __name__ == "__main__":
    sys.exit(main())
