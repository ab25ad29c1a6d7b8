#!/usr/bin/env python3
"""Costs of a WebSocket tunnel that do not depend on the machine's load, for before/after comparisons.

    python3 tools/bench/tunnel_cost.py [--proxies tether,nginx,haproxy] [--duration 3]
                                       [--idle-conns 5000] [--no-callgrind] [--no-syscalls]
                                       [--no-idle]

- syscalls: each proxy (compare.py's configurations, one worker) runs under
  `perf stat -e raw_syscalls:sys_enter,syscalls:sys_enter_*,context-switches -p PID` during
  one `tether-ws-bench echo` run (64 connections, 256-byte messages, as compare.py's scenario
  b); printed per echoed message (one message each way): all syscalls and the most frequent.
- callgrind (tether only): instructions (Ir, user space) and calls of malloc per echoed
  message, counters zeroed after a warm-up and dumped after one echo run.
- idle (tether only): `tether-ws-bench idle` opens --idle-conns tunnels that each carried one
  message; resident bytes per tunnel = (RSS with them - RSS before) / tunnels (compare.py's
  scenario c runs the same for nginx and HAProxy).

The backend of every run is tether-ws-echo (--ws-backend; tools/bench/ws_echo_backend.cpp),
as in compare.py's scenario b. Builds nothing (uses build/); starts its own processes, bounds every wait, stops only what it
started, by PID. Python 3.11 standard library only.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare  # noqa: E402  (Proc, configs: one definition of the setups)
import costs  # noqa: E402  (perf stat and callgrind counts)


def echo(s: compare.Setup, port: int, d: int) -> int:
    """One echo run of d seconds; the messages echoed (failures raise)."""
    argv = [s.args.ws_bench, "echo", "--host", "127.0.0.1", "--port", str(port), "--conns",
            str(compare.WS_CONNS), "--size", str(compare.WS_SIZE), "--seconds", str(d)]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=d + 60)
    j = compare.last_json(r.stdout)
    if j["failed"] or j["errors"] or j["timed_out"]:
        raise RuntimeError(f"tether-ws-bench echo failed: {r.stdout}{r.stderr}")
    return int(j["messages"])


def idle(s: compare.Setup) -> dict:
    n = s.args.idle_conns
    proc, port, _ = costs.start_tether(s, "idle", compare.idle_servers(s))
    try:
        time.sleep(compare.IDLE_SETTLE)
        before = compare.rss_bytes(proc.pid)
        client = subprocess.Popen([s.args.ws_bench, "idle", "--host", "127.0.0.1", "--port",
                                   str(port), "--conns", str(n), "--hold-seconds", "300",
                                   "--sources", compare.idle_sources(n)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            line = compare.read_line(client, time.monotonic() + 300) or ""
            if not line.startswith("ready"):
                raise RuntimeError(f"tether-ws-bench idle did not get ready: {line!r}")
            ready = int(line.split()[1])
            time.sleep(compare.IDLE_SETTLE)
            after = compare.rss_bytes(proc.pid)
            client.communicate(timeout=120)  # stdin closed: the client closes every tunnel
        finally:
            if client.poll() is None:
                client.kill()  # our own child, by PID
                client.wait()
    finally:
        proc.stop()
    return {"tunnels": ready, "before": before, "after": after,
            "per_tunnel": (after - before) / ready if ready else float("nan")}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    costs.add_args(p, "tether", "backend", "ws-backend", "ws-bench", "nginx", "haproxy")
    p.add_argument("--idle-conns", type=int, default=5000)
    p.add_argument("--no-idle", action="store_true")
    a = p.parse_args()
    proxies = [x for x in a.proxies.split(",") if x]
    if bad := [x for x in proxies if x not in compare.PROXIES]:
        p.error(f"unknown proxy: {bad}")
    with costs.session(a, "tunnel_cost.py") as s:
        s.backend_port = compare.start_ws_backend(s)  # every run here is WebSocket
        a.idle_conns = min(a.idle_conns, (s.nofile - compare.FD_MARGIN) // 2)

        def load(port: int, d: int) -> int:
            return echo(s, port, d)

        if not a.no_syscalls:
            for name in proxies:
                proc, port = compare.start_proxy(s, name)
                r = costs.perf_syscalls(s, name, proc.pid, port, load, 6)
                proc.stop()
                top = ", ".join(f"{k} {v:.3f}" for k, v in r["top"])
                print(f"ws echo  {name:8} syscalls/msg {r['total']:6.3f}  ctx switches/msg "
                      f"{r['switches']:5.3f}  ({r['units']} msgs; {top})", flush=True)
        if not a.no_callgrind:
            r = costs.callgrind(s, "callgrind", load)
            print(f"ws echo  tether   instructions/msg {r['ir']:8,.0f}  mallocs/msg "
                  f"{r['mallocs']:6.3f}  ({r['units']} msgs under callgrind)", flush=True)
        if not a.no_idle:
            r = idle(s)
            print(f"idle     tether   bytes/tunnel {r['per_tunnel']:8,.0f}  ({r['tunnels']} tunnels; "
                  f"RSS {r['before'] / 2**20:.1f} -> {r['after'] / 2**20:.1f} MiB)", flush=True)
    return 0

if __name__ == "__main__":
    sys.exit(main())
