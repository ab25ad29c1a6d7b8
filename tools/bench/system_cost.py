#!/usr/bin/env python3
"""What a proxy costs the OTHER processes per keep-alive request (the client wrk, the backend,
the kernel's TCP, the scheduler), next to its own cost, and whether it is idle or waiting.

    python3 tools/bench/system_cost.py [--targets tether,nginx,haproxy,direct] [--rounds 3]
        [--duration 5] [--conns 64] [--path /] [--no-epoll] [--by-name] [--nice -10] [--pin]
        [--tether-b OTHER_BINARY --targets tether,tether-b,haproxy]

A proxy that spends little CPU per request can still lose requests/s when, with client, proxy
and backend on the same CPUs, it makes the client or the backend work more (more wake-ups,
more reads of smaller pieces, more TCP segments, fewer events per epoll_wait), or when it
sleeps while the others are the bottleneck. For each target (compare.py's proxies and
configurations, one worker, in front of one tether-demo-backend --threads 1; `direct` = wrk
straight to the backend; `tether-b` = --tether-b's binary), interleaved over --rounds rounds
of `wrk -t1 -c64 -dD --latency` on GET /, per request unless said:

- per process (proxy = its process tree, backend, wrk): CPU (perf's task-clock) and its user
  and system parts, context switches (all; voluntary = sleeps, involuntary = preemptions),
  CPU migrations, wake-ups it did (sched:sched_waking in its context), syscalls (all; by name
  with --by-name, which slows every process: ~350 tracepoints each), TCP segments handed to
  the loopback device while it ran (net:net_dev_xmit: its sends, plus the ACKs the kernel
  sent in its context);
- proxy and backend, as % of the run's wall time: on a CPU, and runnable but waiting for a
  CPU (/proc/PID/task/*/schedstat); what is left is sleep (idle). wrk runs under perf, so
  these two are not read for it;
- the machine: idle, softirq and steal % (/proc/stat); on every CPU (perf stat -a) context
  switches, wake-ups and the inter-processor interrupts that wake a task on another CPU; the
  deltas of /proc/net/snmp and /proc/net/netstat (OutSegs, DelayedACKs, TCPPureAcks, ...).
  These count all of the machine's work, so other load adds to them;
- unless --no-epoll, in a second wrk run per target: epoll_wait calls and the events each
  returned (mean), per process, from `perf record` of sys_exit_epoll_wait / _epoll_pwait.

The proxy and the backend are watched by `perf stat -p` / `perf record -p`; wrk runs under
`perf stat --` / `perf record --` (its threads included; its switches and user/system time
from the rusage of that perf, which sleeps through the run). Tables show medians over the
rounds. Counts per request hardly move with other load, unlike requests/s (printed too).

With the kernel's autogroups (/proc/sys/kernel/sched_autogroup_enabled), each busy session
gets an equal share of the CPUs however many processes it runs: client, proxy and backend,
in one session beside another shell's build, share about one CPU of two, and requests/s then
follows the sum of the three's CPU per request. --nice -10 runs the script in a session of its
own whose autogroup has nice -10 (/proc/self/autogroup; ~9x the weight of nice 0), closer to a
quiet machine. --pin puts every proxy on CPU 0 and the backend and wrk on CPU 1, so that no
round depends on where the scheduler placed the three. Builds nothing (uses build/); starts
its own processes, bounds every wait, stops only what it started, by PID. Needs root (perf
tracepoints). Python 3.11 standard library only.
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare  # noqa: E402  (Proc, configurations: one definition of the setups)
import costs  # noqa: E402  (session: temporary directory and backend)

ROLES = ("proxy", "backend", "wrk")
STAT_EVENTS = ("task-clock,context-switches,cpu-migrations,net:net_dev_xmit,raw_syscalls:sys_enter,"
               "sched:sched_waking")
# Counted on every CPU (perf stat -a) during the stat pass: wake-ups, switches and the
# inter-processor interrupts that wake a task on another CPU.
MACHINE_EVENTS = ("sched:sched_switch,sched:sched_wakeup,ipi:ipi_send_cpu,"
                  "irq_vectors:reschedule_entry,irq_vectors:call_function_single_entry")
BY_NAME = ",syscalls:sys_enter_*"  # --by-name: every syscall's own count (slows the processes)
EPOLL_EVENTS = "syscalls:sys_exit_epoll_wait,syscalls:sys_exit_epoll_pwait"
SNMP = {"Tcp": ("OutSegs", "InSegs", "RetransSegs"),
        "TcpExt": ("DelayedACKs", "TCPPureAcks", "TCPHPAcks", "TCPHPHits", "TCPAutoCorking",
                   "TCPOrigDataSent", "TCPRcvCoalesce")}
PERF_WAIT = 30.0  # seconds perf may take to write its output after SIGINT


def net_counters() -> dict[str, int]:
    """The SNMP counters of SNMP from /proc/net/snmp and /proc/net/netstat."""
    out: dict[str, int] = {}
    for f in ("/proc/net/snmp", "/proc/net/netstat"):
        lines = Path(f).read_text().splitlines()
        for names, values in zip(lines[::2], lines[1::2]):
            kind, names = names.split(":", 1)
            vals = values.split(":", 1)[1].split()
            for n, v in zip(names.split(), vals):
                if n in SNMP.get(kind, ()):
                    out[n] = int(v)
    return out


def cpu_times() -> list[int]:
    """The machine's CPU time by kind in clock ticks (/proc/stat's cpu line: user nice system
    idle iowait irq softirq steal ...)."""
    return [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]


def wrk_argv(s: compare.Setup, port: int, d: int) -> list[str]:
    a = s.args
    return [a.wrk, "-t1", f"-c{a.conns}", f"-d{d}s", "--latency", f"http://127.0.0.1:{port}{a.path}"]


def wrk_result(out: str) -> dict[str, float]:
    if "requests in" not in out:
        raise RuntimeError(f"wrk failed: {out}")
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        raise RuntimeError(f"wrk saw {m.group(1)} error responses: {out}")
    return {"requests": int(re.search(r"(\d+) requests in", out).group(1)),
            "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p99_ms": compare.to_us(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)) / 1e3}


def stop_perf(perf: subprocess.Popen) -> None:
    if perf.poll() is None:
        perf.send_signal(signal.SIGINT)
    try:
        perf.wait(timeout=PERF_WAIT)
    except subprocess.TimeoutExpired:
        perf.kill()  # our own child, by PID
        perf.wait(timeout=PERF_WAIT)


def watched(target: str, s: compare.Setup) -> dict[str, list[int]]:
    """role -> PIDs perf attaches to (wrk is started under perf instead)."""
    pids = {"backend": [s.procs["backend"].pid]}
    if target != "direct":
        pids["proxy"] = compare.process_tree(s.procs[target].pid)
    return pids


def sched_counts(pids: list[int]) -> dict[str, float]:
    """User and system CPU seconds, voluntary and involuntary context switches, seconds on a CPU
    and seconds runnable but waiting for one (/proc/PID/task/TID/schedstat) of pids and all
    their threads, from /proc (user and system CPU in clock ticks: 10 ms resolution)."""
    ticks = os.sysconf("SC_CLK_TCK")
    out = {"user": 0.0, "sys": 0.0, "vol": 0.0, "invol": 0.0, "oncpu": 0.0, "runq": 0.0}
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                run, wait, _ = (task / "schedstat").read_text().split()
                out["oncpu"] += int(run) / 1e9  # seconds on a CPU
                out["runq"] += int(wait) / 1e9  # seconds runnable, waiting for a CPU
                f = (task / "stat").read_text().rsplit(")", 1)[1].split()
                out["user"] += int(f[11]) / ticks
                out["sys"] += int(f[12]) / ticks
                for line in (task / "status").read_text().splitlines():
                    if line.startswith("voluntary_ctxt_switches:"):
                        out["vol"] += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches:"):
                        out["invol"] += int(line.split()[1])
            except (OSError, IndexError, ValueError):
                pass  # a thread that ended meanwhile
    return out


def pin(pids: list[int], cpu: int) -> None:
    """Every thread of pids (ours: a proxy, the backend) to run on `cpu` only."""
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                os.sched_setaffinity(int(task.name), {cpu})
            except (OSError, ValueError):
                pass  # a thread that ended meanwhile


def run_under_perf(s: compare.Setup, tag: str, target: str, mode: list[str],
                   files: dict[str, Path]) -> tuple[dict[str, float], dict[str, dict]]:
    """One wrk run of --duration seconds with `perf <mode>` on each watched process and around
    wrk; files[role] is each perf's output. Returns wrk's figures, and per role the deltas of
    sched_counts (wrk's from the rusage of `perf ... -- wrk`, which includes wrk: perf itself
    sleeps through the run)."""
    port = s.ports[target]
    perfs = []
    roles = watched(target, s)
    try:
        for role, pids in roles.items():
            perfs.append(subprocess.Popen(["perf"] + mode + ["-o", str(files[role]), "-p",
                                          ",".join(map(str, pids))],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        if mode[0] == "stat":
            perfs.append(subprocess.Popen(["perf", "stat", "-x", ",", "-o", str(files["machine"]),
                                           "-a", "-e", MACHINE_EVENTS],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        if s.args.pin:
            for role, pids in roles.items():
                pin(pids, 0 if role == "proxy" else 1)
        time.sleep(0.5)  # perf attaches
        before = {role: sched_counts(pids) for role, pids in roles.items()}
        t0 = time.monotonic()
        out_path = s.tmp / f"{tag}.wrk.txt"
        with open(out_path, "w") as out:
            taskset = ["taskset", "-c", "1"] if s.args.pin else []
            wrk = subprocess.Popen(taskset + ["perf"] + mode + ["-o", str(files["wrk"]), "--"]
                                   + wrk_argv(s, port, s.args.duration),
                                   stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + s.args.duration + 60
        while True:
            pid, status, ru = os.wait4(wrk.pid, os.WNOHANG)
            if pid:
                wrk.returncode = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > deadline:
                wrk.kill()  # our own child, by PID
                wrk.wait()
                raise RuntimeError("wrk did not finish in time")
            time.sleep(0.05)
        after = {role: sched_counts(pids) for role, pids in roles.items()}
        text = out_path.read_text(errors="replace")
        if wrk.returncode != 0:
            raise RuntimeError(f"perf/wrk failed ({wrk.returncode}): {text}")
        sched = {role: {k: after[role][k] - before[role][k] for k in after[role]} for role in roles}
        sched["wrk"] = {"user": ru.ru_utime, "sys": ru.ru_stime, "vol": float(ru.ru_nvcsw),
                        "invol": float(ru.ru_nivcsw), "oncpu": float("nan"), "runq": float("nan")}
        wall = time.monotonic() - t0
        for role in sched:
            sched[role]["wall"] = wall
        return wrk_result(text), sched
    finally:
        for p in perfs:
            stop_perf(p)


def parse_stat(path: Path) -> dict[str, float]:
    """perf stat -x , output: event -> count (task-clock in ms)."""
    counts: dict[str, float] = {}
    for line in path.read_text().splitlines():
        f = line.split(",")
        if len(f) > 2 and re.fullmatch(r"[\d.]+", f[0]):
            counts[f[2].replace("syscalls:sys_enter_", "")] = float(f[0])
    return counts


def stat_run(s: compare.Setup, target: str, rnd: int) -> dict:
    """Pass 1: per-process perf stat counts and the machine's TCP counters, per request."""
    files = {role: s.tmp / f"stat-{target}-{rnd}-{role}.txt" for role in ROLES + ("machine",)}
    net0, cpu0 = net_counters(), cpu_times()
    events = STAT_EVENTS + (BY_NAME if s.args.by_name else "")
    w, sched = run_under_perf(s, f"stat-{target}-{rnd}", target,
                              ["stat", "-x", ",", "-e", events], files)
    net1, cpu1 = net_counters(), cpu_times()
    d = [b - a for a, b in zip(cpu0, cpu1)]
    n = w["requests"]
    res: dict = {"rps": w["rps"], "p99_ms": w["p99_ms"], "requests": n,
                 "net": {k: (net1[k] - net0[k]) / n for k in net0},
                 "idle_pct": 100 * (d[3] + d[4]) / max(1, sum(d[:8])),
                 "softirq_pct": 100 * d[6] / max(1, sum(d[:8])),
                 "steal_pct": 100 * d[7] / max(1, sum(d[:8]))}
    if files["machine"].exists():
        res["machine"] = {k.split(":")[1]: v / n for k, v in parse_stat(files["machine"]).items()}
    for role in ROLES:
        if not files[role].exists():
            continue
        c = parse_stat(files[role])
        res[role] = {"cpu_us": c.pop("task-clock", 0.0) * 1e3 / n,
                     "switches": c.pop("context-switches", 0.0) / n,
                     "migrations": c.pop("cpu-migrations", 0.0) / n,
                     "wakings": c.pop("sched:sched_waking", 0.0) / n,
                     "segments": c.pop("net:net_dev_xmit", 0.0) / n,
                     "syscalls": c.pop("raw_syscalls:sys_enter", 0.0) / n,
                     "by_name": {k: v / n for k, v in c.items() if v}}
        sc = sched.get(role, {})
        res[role] |= {"user_us": sc.get("user", 0.0) * 1e6 / n, "sys_us": sc.get("sys", 0.0) * 1e6 / n,
                      "vol": sc.get("vol", 0.0) / n, "invol": sc.get("invol", 0.0) / n,
                      "oncpu_pct": 100 * sc.get("oncpu", 0.0) / sc.get("wall", 1.0),
                      "runq_pct": 100 * sc.get("runq", 0.0) / sc.get("wall", 1.0)}
    return res


def parse_epoll(path: Path) -> tuple[int, int]:
    """(epoll waits, events returned) in a perf record file (timeouts count as waits)."""
    r = subprocess.run(["perf", "script", "-i", str(path), "-F", "trace"], capture_output=True,
                       text=True, timeout=300)
    waits = events = 0
    for line in r.stdout.splitlines():
        if m := re.search(r"(0x[0-9a-f]+|-?\d+)\s*$", line.strip()):
            v = int(m.group(1), 0)
            waits += 1
            events += max(v, 0)
    return waits, events


def epoll_run(s: compare.Setup, target: str, rnd: int) -> dict:
    """Pass 2: epoll_wait calls per request and events per call, per process."""
    files = {role: s.tmp / f"epoll-{target}-{rnd}-{role}.data" for role in ROLES}
    w, _ = run_under_perf(s, f"epoll-{target}-{rnd}", target,
                       ["record", "-q", "-m", "1024", "-e", EPOLL_EVENTS], files)
    res: dict = {"rps_epoll": w["rps"]}
    for role in ROLES:
        if files[role].exists():
            waits, events = parse_epoll(files[role])
            res[role] = {"epoll_waits": waits / w["requests"],
                         "events_per_wait": events / waits if waits else float("nan")}
        files[role].unlink(missing_ok=True)
    return res


def cell(x: float, f: str) -> str:
    return "—" if x != x else f"{x:{f}}"


def med(values: list[float]) -> float:
    vals = [v for v in values if v == v]
    return statistics.median(vals) if vals else float("nan")


COLUMNS = (  # (key in a process's stat result, header, format)
    ("oncpu_pct", "on a CPU % of wall", ".1f"), ("runq_pct", "waiting for a CPU % of wall", ".1f"),
    ("cpu_us", "CPU us/req", ".2f"), ("user_us", "user us/req", ".2f"),
    ("sys_us", "sys us/req", ".2f"), ("switches", "ctx switches/req", ".3f"),
    ("vol", "voluntary/req", ".3f"), ("invol", "involuntary/req", ".3f"),
    ("migrations", "migrations/req", ".3f"), ("wakings", "wake-ups done/req", ".3f"), ("syscalls", "syscalls/req", ".2f"),
    ("segments", "segments sent/req", ".2f"))


def report(targets: list[str], results: dict[str, list[dict]], top: int) -> str:
    cols = " | ".join(h for _, h, _ in COLUMNS)
    lines = [f"| target | req/s | p99 ms | process | {cols} | epoll_waits/req | events/epoll_wait "
             "| top syscalls/req |",
             "|---|---:|---:|---|" + "---:|" * (len(COLUMNS) + 2) + "---|"]
    for t in targets:
        runs = results[t]
        first = True
        total = 0.0
        for role in ROLES:
            stats = [r["stat"][role] for r in runs if role in r["stat"]]
            if not stats:
                continue
            ep = [r["epoll"][role] for r in runs if "epoll" in r and role in r["epoll"]]
            names: dict[str, list[float]] = {}
            for st in stats:
                for k, v in st["by_name"].items():
                    names.setdefault(k, []).append(v)
            by = sorted(((k, med(v + [0.0] * (len(stats) - len(v)))) for k, v in names.items()),
                        key=lambda kv: -kv[1])[:top]
            head = (f"{t} | {med([r['stat']['rps'] for r in runs]):,.0f} | "
                    f"{med([r['stat']['p99_ms'] for r in runs]):.2f}") if first else " | | "
            first = False
            total += med([x["cpu_us"] for x in stats])
            cells = " | ".join(cell(med([x[k] for x in stats]), f) for k, _, f in COLUMNS)
            epw = f"{med([e['epoll_waits'] for e in ep]):.3f}" if ep else "—"
            epe = f"{med([e['events_per_wait'] for e in ep]):.2f}" if ep else "—"
            lines.append(f"| {head} | {role} | {cells} | {epw} | {epe} | "
                         + ", ".join(f"{k} {v:.2f}" for k, v in by) + " |")
        lines.append(f"| | | | sum of CPU us/req | {total:.2f} |" + " |" * (len(COLUMNS) + 2))
    lines += ["", "The machine during the runs (/proc/stat: idle + iowait, softirq and steal % of "
              "all CPUs' time) and its TCP counters per request (deltas of /proc/net/snmp, "
              "netstat); medians:", "",
              "| target | idle % | softirq % | steal % | "
              + " | ".join(n for k in SNMP for n in SNMP[k]) + " | "
              + " | ".join(e.split(":")[1] for e in MACHINE_EVENTS.split(",")) + " |",
              "|---|---:|---:|---:|" + "---:|" * (sum(len(v) for v in SNMP.values())
                                                 + len(MACHINE_EVENTS.split(",")))]
    for t in targets:
        cells = [f"{med([r['stat'][k] for r in results[t]]):.1f}"
                 for k in ("idle_pct", "softirq_pct", "steal_pct")]
        cells += [f"{med([r['stat']['net'].get(n, float('nan')) for r in results[t]]):.2f}"
                  for k in SNMP for n in SNMP[k]]
        cells += [f"{med([r['stat'].get('machine', {}).get(e.split(':')[1], float('nan')) for r in results[t]]):.3f}"
                  for e in MACHINE_EVENTS.split(",")]
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    compare.add_tool_args(p, "tether", "backend", "nginx", "haproxy", "wrk")
    p.add_argument("--targets", default="tether,nginx,haproxy,direct",
                   help="of tether, nginx, haproxy, direct, and tether-b (see --tether-b)")
    p.add_argument("--tether-b", help="a second tether binary, measured as the target tether-b "
                   "(same configuration): before/after comparisons, interleaved")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=int, default=5, help="seconds of each measured wrk run")
    p.add_argument("--conns", type=int, default=compare.WRK_CONNS, help="wrk -c")
    p.add_argument("--path", default="/", help="request target (the demo backend's)")
    p.add_argument("--no-epoll", action="store_true", help="skip the epoll_wait pass")
    p.add_argument("--by-name", action="store_true",
                   help="count each syscall by name too (perf's syscalls:sys_enter_*: ~350 "
                        "tracepoints per process, which slows every process down)")
    p.add_argument("--nice", type=int, default=0,
                   help="run in a session of its own whose autogroup has this nice value (e.g. "
                        "-10; root): the other sessions' load then takes less of the measured "
                        "processes' CPU, closer to a quiet machine")
    p.add_argument("--pin", action="store_true",
                   help="the proxy on CPU 0, the backend and wrk on CPU 1 (for every target "
                        "alike): no round then depends on where the scheduler put them")
    p.add_argument("--top", type=int, default=6, help="syscalls shown per process")
    a = p.parse_args()
    targets = [t for t in a.targets.split(",") if t]
    valid = compare.TARGETS + ("tether-b",)
    if bad := [t for t in targets if t not in valid]:
        p.error(f"unknown target {bad}; valid: {', '.join(valid)}")
    if "tether-b" in targets and not (a.tether_b and Path(a.tether_b).is_file()):
        p.error("target tether-b needs --tether-b BINARY")
    if a.pin and len(os.sched_getaffinity(0)) < 2:
        p.error("--pin needs two CPUs")
    if a.rounds < 1 or a.duration < 1 or a.conns < 1:
        p.error("--rounds, --duration and --conns must be >= 1")
    compare.check_tool_args(p, a, "tether", "backend", "wrk",
                            *(t for t in targets if t in ("nginx", "haproxy")))
    if a.nice and os.getsid(0) != os.getpid():
        # a session (and so an autogroup) of our own, which ends with us; -w: the caller
        # waits for it when setsid has to fork
        os.execvp("setsid", ["setsid", "-w", sys.executable] + sys.argv)
    if a.nice:
        Path("/proc/self/autogroup").write_text(str(a.nice))
        print(f"# autogroup: {Path('/proc/self/autogroup').read_text().strip()}")
    results: dict[str, list[dict]] = {t: [] for t in targets}
    with costs.session(a, "system_cost.py") as s:
        s.procs["backend"] = next(x for x in compare.LIVE if x.name == "backend")
        s.ports["direct"] = s.backend_port
        for t in targets:
            if t == "tether-b":
                a.tether, main_binary = a.tether_b, a.tether
                s.procs[t], s.ports[t] = compare.start_proxy(s, "tether", tag="-b")
                a.tether = main_binary
            elif t != "direct":
                s.procs[t], s.ports[t] = compare.start_proxy(s, t)
        for t in targets:  # warm-up: pooled upstream connections, caches
            subprocess.run(wrk_argv(s, s.ports[t], 1), capture_output=True, timeout=60)
        for rnd in range(a.rounds):
            for t in targets:
                r = {"stat": stat_run(s, t, rnd)}
                if not a.no_epoll:
                    r["epoll"] = epoll_run(s, t, rnd)
                results[t].append(r)
                st = r["stat"]
                compare.log(f"round {rnd + 1}/{a.rounds} {t}: {st['rps']:,.0f} req/s, " + ", ".join(
                    f"{role} {st[role]['cpu_us']:.1f} us {st[role]['switches']:.2f} cs "
                    f"{st[role]['syscalls']:.2f} sc {st[role]['segments']:.2f} seg"
                    for role in ROLES if role in st)
                    + f", OutSegs {st['net']['OutSegs']:.2f}/req")
    print(report(targets, results, a.top))
    return 0


if __name__ == "__main__":
    compare.run_main(main)
