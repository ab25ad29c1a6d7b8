#!/usr/bin/env python3
"""tether side by side with nginx, HAProxy and no proxy at all, against the same backend.

    python3 tools/bench/compare.py [--workers 1] [--rounds 3] [--duration 5]
                                   [--idle-conns 10000] [--only a,d,e,b,c,w] [--out docs/benchmarks.md]
                                   [--cpu-budget 0.2 [--cpu-period-us 10000]]

One tether-demo-backend (--threads 1) serves every run but b's; b's WebSocket echo runs against
tether-ws-echo (tools/bench/ws_echo_backend.cpp, a lean epoll echo server) through a second
set of proxies started in front of it, so that client and backend cost little CPU per message
and the proxies' difference shows in messages/s. tether (`workers: W`), nginx
(`worker_processes W`) and HAProxy (`nbthread W`) proxy to it, each on its own free port on
127.0.0.1, with equivalent configurations (see the report's notes). Scenarios:

  a  HTTP keep-alive, small responses: wrk -t1 -c64 -dD --latency
  d  a new connection per request (accept path): the same with -H "Connection: close"
  e  1 MB responses: wrk -t1 -c16 on /bytes?n=1048576, throughput in MB/s of body
  b  WebSocket echo: tether-ws-bench echo, 64 connections, 256-byte messages, D seconds
  c  idle tunnels: tether-ws-bench idle with --idle-conns connections (at most what
     RLIMIT_NOFILE lets one proxy process hold: two descriptors a tunnel); the proxy's RSS is
     read with no connection (a freshly started proxy) and once every tunnel has carried one
     message; bytes per tunnel = (after - before) / tunnels open. No direct run. Clients use
     one more 127.0.0.x source address per 20,000 tunnels, and one more backend (its own
     port, so its own range of upstream source ports) serves every 25,000.
  w  scaling: scenario a against each proxy with 1 and with 2 workers (its own processes).

Every scenario runs --rounds rounds, each round tether, nginx, haproxy, direct in turn
(interleaved, so slow drift of the machine hits all alike); the table shows medians and the
ratios of tether to nginx, to HAProxy, to the better of the two and to direct. With --out the
report replaces its own block in the file (one block per --workers), keeping the rest of the
file.

Proxy-bound mode, --cpu-budget X: every proxy's process tree (nginx: master and workers) runs
in a cgroup of its own with a CFS quota of X CPUs per worker (2 workers: 2X), period
--cpu-period-us (tools/bench/cpu_budget.py: cgroup v1 cpu controller or cgroup v2 cpu.max;
the script stops with the reason when the machine has neither writable). The proxy, not wrk
and the backend beside it, is then what bounds requests/s, as on a load balancer that has
its own machine. The clients, the backends and direct run unbudgeted, in one more cgroup
with no quota; --cpu-weight gives these cgroups precedence over other work on the machine.
The report adds the throttled periods of each run (cpu.stat) and goes to its own block
(`workers=N budget=X`), after the unbudgeted ones.

The script builds nothing, starts its processes itself, bounds every wait, and stops
only what it started, by PID. Python 3.11 standard library only.
"""
from __future__ import annotations

import argparse
import signal
import sys
import tempfile
from pathlib import Path

# compare.py is also the library of the other benchmark scripts (`import compare`:
# compare.Proc, compare.start_proxy, compare.run_main ...): every name of its parts
# stays reachable as compare.NAME.
from compare_procs import *  # noqa: F401,F403
from compare_setup import *  # noqa: F401,F403
from compare_clients import *  # noqa: F401,F403
from compare_report import *  # noqa: F401,F403
from compare_frame import *  # noqa: F401,F403


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    tools = ("tether", "backend", "ws-bench", "ws-backend", "nginx", "haproxy", "wrk")
    add_tool_args(p, *tools)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=int, default=5, help="seconds per wrk / echo run")
    p.add_argument("--warmup", type=int, default=1,
                   help="seconds of discarded load per target before the rounds of a, d, e, b, w")
    p.add_argument("--idle-conns", type=int, default=10000)
    p.add_argument("--idle-hold", type=int, default=300,
                   help="upper bound in seconds on one idle run (open + hold)")
    p.add_argument("--only", default="a,d,e,b,c,w", help="scenarios to run, e.g. a,c")
    p.add_argument("--out", help="also write the Markdown report to this file")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, configs)")
    add_budget_args(p)
    a = p.parse_args()
    a.only = [x.strip() for x in a.only.split(",") if x.strip()]
    if bad := [x for x in a.only if x not in SCENARIOS]:
        p.error(f"--only: unknown scenario {bad}; valid: {', '.join(SCENARIOS)}")
    if a.workers < 1 or a.rounds < 1 or a.duration < 1 or a.idle_conns < 1:
        p.error("--workers, --rounds, --duration and --idle-conns must be >= 1")
    check_budget_args(p, a)
    check_tool_args(p, a, *tools)
    return a


def main() -> int:
    a = parse_args()
    nofile = raise_nofile()
    started = now_text()
    info = run_info("compare.py", a) | {"haproxy": tool_version([a.haproxy, "-v"]).split(" - ")[0]}
    notes: list[str] = []
    if "c" in a.only and nofile < 2 * a.idle_conns + FD_MARGIN:
        notes.append(f"RLIMIT_NOFILE hard limit is {nofile} (raising it needs CAP_SYS_RESOURCE): a "
                     f"proxy process needs two descriptors per tunnel, so --idle-conns "
                     f"{a.idle_conns} was measured at {(nofile - FD_MARGIN) // 2} tunnels, the "
                     "most the limit allows.")
        log("warning: " + notes[-1])
    tmp = Path(tempfile.mkdtemp(prefix="tether-bench-"))
    tmp.chmod(0o755)  # nginx workers run as an unprivileged user when we are root
    s = Setup(a, tmp, nofile)
    open_budgets(s, "compare.py")
    budgets = s.budgets
    results: dict[str, dict[str, list[dict]]] = {}
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        s.backend_port = start_backend(s)
        s.ports["direct"] = s.backend_port
        for name in PROXIES:
            s.procs[name], s.ports[name] = start_proxy(s, name)
        log("backend :{}, {}; logs in {}".format(s.backend_port, ", ".join(
            f"{n} :{s.ports[n]}" for n in PROXIES), tmp))
        if "b" in a.only:  # WebSocket echo: its own backend, and proxies in front of it
            s.ws_ports["direct"] = start_ws_backend(s)
            for name in PROXIES:
                s.ws_procs[name], s.ws_ports[name] = start_proxy(s, name, tag="-ws",
                                                                 servers=[s.ws_ports["direct"]])
        for key in a.only:
            if key == "w":
                results["w"] = run_scaling(s)
                continue
            results[key] = {t: [] for t in TARGETS}
            ports, procs = (s.ws_ports, s.ws_procs) if key == "b" else (s.ports, s.procs)
            if key != "c" and a.warmup > 0:  # discarded: first connections, caches, heaps
                for t in TARGETS:
                    run_load(s, key, ports[t], None, a.warmup)
            for rnd in range(a.rounds):
                for t in TARGETS:
                    if key == "c" and t == "direct":
                        continue
                    pid = procs[t].pid if t in procs else None
                    r = run_idle(s, t, rnd) if key == "c" else run_load(s, key, ports[t], pid,
                                                                         a.duration)
                    results[key][t].append(r)
                    log(f"{SCENARIOS[key]} round {rnd + 1}/{a.rounds} {t}: "
                        + ", ".join(f"{k}={fmt(v)}" for k, v in r.items()))
        notes += exited_notes(s, PROXIES)
    finally:
        stop_all()
        if budgets is not None:  # also on an error or Ctrl-C: no cgroup is left behind
            for err in budgets.close():
                log(err)
    for name, proc in s.procs.items():
        if proc.p.returncode not in (0, None, -signal.SIGTERM):
            notes.append(f"{name} stopped with exit code {proc.p.returncode}")
    write = write_out
    if budgets is not None:
        write = lambda path, text, w: write_budget_out(path, text, w, a.cpu_budget)  # noqa: E731
    finish(s, info, notes, lambda: report(s, results, info, started), write)
    return 0


def run_scaling(s: Setup) -> dict[str, list[dict]]:
    """w: scenario a against every proxy at each worker count of SCALING, interleaved."""
    a = s.args
    procs: dict[str, tuple[Proc, int]] = {}
    out: dict[str, list[dict]] = {}
    try:
        for name in PROXIES:
            for w in SCALING:
                procs[f"{name}-{w}"] = start_proxy(s, name, tag=f"-w{w}", workers=w)
                out[f"{name}-{w}"] = []
        if a.warmup > 0:
            for _, port in procs.values():
                run_wrk(s, port, None, a.warmup)
        for rnd in range(a.rounds):
            for t, (proc, port) in procs.items():
                r = run_wrk(s, port, proc.pid, a.duration)
                out[t].append(r)
                log(f"{SCENARIOS['w']} round {rnd + 1}/{a.rounds} {t}: "
                    + ", ".join(f"{k}={fmt(v)}" for k, v in r.items()))
    finally:
        for proc, _ in procs.values():
            proc.stop()
    return out


if __name__ == "__main__":
    run_main(main)
