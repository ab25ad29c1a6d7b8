#!/usr/bin/env python3
"""WebSocket echo (compare.py's scenario b) with the whole machine's CPU accounted, and A/B of
two tether binaries interleaved with the other proxies.

    python3 tools/bench/ws_echo_ab.py [--tether build/tether] [--tether-b other/tether]
                                      [--targets tether,tether-b,nginx,haproxy,direct]
                                      [--rounds 5] [--duration 5] [--conns 64] [--size 256]
                                      [--cpu-budget 0.2 [--cpu-period-us 10000]]

Every round runs `tether-ws-bench echo` (64 connections, 256-byte messages, closed loop)
against each target in turn, as compare.py does, and prints per target the medians of:
messages/s, p50 and p99 round trip, and the CPU time per echoed message of the client, of the
backend, of the proxy and of the three together, the CPU the machine spent (all its CPUs,
from /proc/stat) per message, how busy the machine was (% of all CPUs) and how much of
that was none of the three (other work on the machine), TCP segments sent per message (all of
the machine's: 4 through a proxy, 2 direct, when no pure ACK is sent), and the voluntary
(slept in epoll_wait) and involuntary (preempted) context switches per message of the proxy
(nginx: master + workers), the backend and the client. When the machine is busy all the time,
messages/s follows the three processes' CPU per message; when it has idle time, something
else (latency, wake-ups) limits the closed loop. So besides the ratios of messages/s, the ratio
of that CPU per message (the other target's over the first's) is printed per round: on a
shared, saturated machine it moves less with the other work than messages/s does.

With --cpu-budget, compare.py's proxy-bound mode: every proxy (tether-b too) runs in a cgroup
of its own with that CFS quota per worker, the client and the backend in one without a quota
(tools/bench/cpu_budget.py; removed at the end).

tether and tether-b run with compare.py's configuration (one worker unless --workers);
nginx and HAProxy likewise; direct is the backend alone. The backend is compare.py's
scenario b backend, tether-ws-echo (--ws-backend; tools/bench/ws_echo_backend.cpp). Builds nothing; starts its own
processes, bounds every wait, stops only what it started, by PID. Python 3.11 standard
library only.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare  # noqa: E402  (Proc, configs, /proc readers: one definition of the setups)


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs."""
    f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = f[3] + f[4]  # idle + iowait
    total = sum(f[:8])  # steal included, guest already in user
    return total - idle, total


def switches(pid: int | None) -> tuple[int, int]:
    """(voluntary, involuntary) context switches of the threads of pid and its children
    (nginx: master + workers)."""
    v = i = 0
    for p in compare.process_tree(pid) if pid else []:
        for task in os.listdir(f"/proc/{p}/task"):
            for line in Path(f"/proc/{p}/task/{task}/status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    v += int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches:"):
                    i += int(line.split()[1])
    return v, i


def tcp_out_segs() -> int:
    """Segments the machine's TCP sent (all sockets; other work on the machine adds a little)."""
    lines = [x.split() for x in Path("/proc/net/snmp").read_text().splitlines() if x.startswith("Tcp:")]
    return int(lines[1][lines[0].index("OutSegs")])


def echo_run(s: compare.Setup, port: int, proxy_pid: int | None, backend_pid: int,
             d: int) -> dict[str, float]:
    a = s.args
    argv = [a.ws_bench, "echo", "--host", "127.0.0.1", "--port", str(port), "--conns",
            str(a.conns), "--size", str(a.size), "--seconds", str(d)]
    p0 = compare.cpu_seconds(proxy_pid) if proxy_pid else 0.0
    b0 = compare.cpu_seconds(backend_pid)
    m0 = machine_ticks()
    ps0, bs0, seg0 = switches(proxy_pid), switches(backend_pid), tcp_out_segs()
    t0 = time.monotonic()
    out_path = Path(s.tmp) / "echo.out"
    with open(out_path, "w") as out:
        child = subprocess.Popen(compare.load_argv(s, argv), stdout=out, stderr=subprocess.DEVNULL)
        try:
            _, status, ru = os.wait4(child.pid, 0)
        except BaseException:
            child.kill()  # our own child, by PID
            child.wait()
            raise
        child.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - t0
    m1 = machine_ticks()
    ps1, bs1, seg1 = switches(proxy_pid), switches(backend_pid), tcp_out_segs()
    p1 = compare.cpu_seconds(proxy_pid) if proxy_pid else 0.0
    b1 = compare.cpu_seconds(backend_pid)
    j = compare.last_json(out_path.read_text())
    msgs = j["messages"]
    if not msgs or j["failed"] or j["errors"] or j["timed_out"]:
        raise RuntimeError(f"echo run failed: {j}")
    # The client's CPU covers its whole life (connect, handshakes, the timed part); the
    # others' cover the same wall time, so per message all are over the client's lifetime.
    client = ru.ru_utime + ru.ru_stime
    proxy, backend = p1 - p0, b1 - b0
    busy = (m1[0] - m0[0]) / os.sysconf("SC_CLK_TCK")
    ncpu = os.cpu_count() or 1
    us = 1e6 / msgs
    return {"mps": j["msgs_per_s"], "p50_us": j["p50_us"], "p99_us": j["p99_us"],
            "client_us": client * us, "backend_us": backend * us, "proxy_us": proxy * us,
            "three_us": (client + backend + proxy) * us, "machine_us": busy * us,
            "busy_pct": 100 * busy / (wall * ncpu),
            "other_pct": 100 * (busy - client - backend - proxy) / (wall * ncpu),
            "segs": (seg1 - seg0) / msgs,
            "proxy_vcs": (ps1[0] - ps0[0]) / msgs, "proxy_ics": (ps1[1] - ps0[1]) / msgs,
            "backend_vcs": (bs1[0] - bs0[0]) / msgs, "backend_ics": (bs1[1] - bs0[1]) / msgs,
            "client_vcs": ru.ru_nvcsw / msgs, "client_ics": ru.ru_nivcsw / msgs}


COLUMNS = ("mps", "p50_us", "p99_us", "client_us", "backend_us", "proxy_us", "three_us",
           "machine_us", "busy_pct", "other_pct", "segs", "proxy_vcs", "proxy_ics", "backend_vcs",
           "backend_ics", "client_vcs", "client_ics")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    compare.add_tool_args(p, "tether", "ws-backend", "ws-bench", "nginx", "haproxy")
    p.add_argument("--tether-b", help="a second tether binary, run as target tether-b")
    p.add_argument("--targets", default="tether,tether-b,nginx,haproxy,direct")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--duration", type=int, default=5)
    p.add_argument("--conns", type=int, default=compare.WS_CONNS)
    p.add_argument("--size", type=int, default=compare.WS_SIZE)
    compare.add_budget_args(p)  # every proxy (tether-b too) in a cgroup of its own
    a = p.parse_args()
    compare.check_budget_args(p, a)
    targets = [t for t in a.targets.split(",") if t and (t != "tether-b" or a.tether_b)]
    if bad := [t for t in targets if t not in compare.TARGETS + ("tether-b",)]:
        p.error(f"unknown target: {bad}")
    compare.check_tool_args(p, a, "tether", "ws-backend", "ws-bench", "nginx", "haproxy")
    compare.raise_nofile()
    tmp = Path(tempfile.mkdtemp(prefix="tether-ws-ab-"))
    tmp.chmod(0o755)
    s = compare.Setup(a, tmp, compare.raise_nofile())
    compare.open_budgets(s, "ws_echo_ab.py")
    budgets = s.budgets
    results: dict[str, list[dict]] = {t: [] for t in targets}
    pids: dict[str, int | None] = {"direct": None}
    try:
        s.backend_port = compare.start_ws_backend(s, "backend")
        s.ports["direct"] = s.backend_port
        for t in targets:
            if t == "direct":
                continue
            if t == "tether-b":
                a_tether = a.tether
                a.tether = a.tether_b
                proc, port = compare.start_proxy(s, "tether", tag="-b")
                a.tether = a_tether
            else:
                proc, port = compare.start_proxy(s, t)
            s.procs[t], s.ports[t] = proc, port
            pids[t] = proc.pid
        backend_pid = next(x.pid for x in compare.LIVE if x.name == "backend")
        for t in targets:  # warm-up, discarded
            echo_run(s, s.ports[t], pids[t], backend_pid, 1)
        for rnd in range(a.rounds):
            for t in targets:
                r = echo_run(s, s.ports[t], pids[t], backend_pid, a.duration)
                results[t].append(r)
                compare.log(f"round {rnd + 1}/{a.rounds} {t}: "
                            + ", ".join(f"{k}={compare.fmt(v)}" for k, v in r.items()))
    finally:
        compare.stop_all()
        if budgets is not None:
            budgets.close()
    budget = f", proxies at {a.cpu_budget:g} CPU per worker" if a.cpu_budget else ""
    print(f"# ws echo, {a.conns} conns x {a.size} B, {a.rounds} rounds x {a.duration} s, "
          f"workers {a.workers}{budget}, load {compare.load_average()}; medians")
    print("target    " + " ".join(f"{c:>11}" for c in COLUMNS))
    for t in targets:
        meds = [statistics.median(r[c] for r in results[t]) for c in COLUMNS]
        print(f"{t:9} " + " ".join(f"{m:>11.4g}" for m in meds))
    for t in targets:
        if t != targets[0]:
            ratios = [results[targets[0]][i]["mps"] / results[t][i]["mps"]
                      for i in range(a.rounds)]
            print(f"{targets[0]} / {t} messages/s per round: "
                  + ", ".join(f"{x:.3f}" for x in ratios)
                  + f"; median {statistics.median(ratios):.3f}")
            if t != "direct":
                cpu = [results[t][i]["three_us"] / results[targets[0]][i]["three_us"]
                       for i in range(a.rounds)]
                print(f"  {t} / {targets[0]} CPU of the three processes per message (the "
                      "messages/s ratio on a saturated machine) per round: "
                      + ", ".join(f"{x:.3f}" for x in cpu) + f"; median {statistics.median(cpu):.3f}")
    return 0


if __name__ == "__main__":
    compare.run_main(main)
