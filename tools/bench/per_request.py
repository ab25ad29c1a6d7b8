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
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare  # noqa: E402  (Proc, configs, wrk parsing: one definition of the setups)

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


def syscalls(s: compare.Setup, key: str, name: str, proc: compare.Proc, port: int) -> dict:
    pids = ",".join(str(p) for p in compare.process_tree(proc.pid))
    wrk(s, key, port, 1)  # warm-up: pooled connections, caches
    out = s.tmp / f"perf-{name}-{key}.txt"
    perf = subprocess.Popen(["perf", "stat", "-x", ",", "-o", str(out), "-e",
                             "raw_syscalls:sys_enter,syscalls:sys_enter_*,context-switches",
                             "-p", pids], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # perf attaches
    try:
        requests = wrk(s, key, port, s.args.duration)
    finally:
        perf.send_signal(signal.SIGINT)
        perf.wait(timeout=30)
    counts: dict[str, int] = {}
    for line in out.read_text().splitlines():
        f = line.split(",")
        if len(f) > 2 and f[0].isdigit():
            counts[f[2].replace("syscalls:sys_enter_", "")] = int(f[0])
    total = counts.pop("raw_syscalls:sys_enter", 0)
    switches = counts.pop("context-switches", 0)
    per = {k: v / requests for k, v in counts.items() if v}
    return {"requests": requests, "total": total / requests, "switches": switches / requests,
            "top": sorted(per.items(), key=lambda kv: -kv[1])[:s.args.top]}


def callgrind_counts(path: Path) -> tuple[int, int]:
    """(instructions, calls of malloc) in one callgrind dump (name compression handled)."""
    names: dict[str, str] = {}
    ir = mallocs = 0
    callee = ""
    rx = re.compile(r"^(c?fn)=\((\d+)\)(?: (.*))?$")
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("summary:") or line.startswith("totals:"):
            ir = max(ir, int(line.split()[1]))
        elif m := rx.match(line):
            if m.group(3):
                names[m.group(2)] = m.group(3)
            if m.group(1) == "cfn":
                callee = names.get(m.group(2), "")
        elif line.startswith("calls=") and callee == "malloc":
            mallocs += int(line[6:].split()[0])
    return ir, mallocs


def callgrind(s: compare.Setup, key: str) -> dict:
    port = compare.free_port()
    d = s.tmp / f"callgrind-{key}"
    d.mkdir()
    cfg = d / "tether.yaml"
    cfg.write_text(compare.tether_config(s, port, [s.backend_port], 1))
    out = d / "callgrind.out"
    proc = compare.Proc(f"callgrind-{key}", ["valgrind", "--tool=callgrind", "--dump-instr=no",
                                             f"--callgrind-out-file={out}", s.args.tether,
                                             "-c", str(cfg)], s.tmp)
    try:
        compare.wait_http_ready(port, proc, timeout=60)
        wrk(s, key, port, 2)  # warm-up
        ctl = ["callgrind_control", "-z", str(proc.pid)]
        subprocess.run(ctl, capture_output=True, timeout=60, check=True)
        requests = wrk(s, key, port, s.args.duration)
        ctl[1] = "-d"
        subprocess.run(ctl, capture_output=True, timeout=60, check=True)
    finally:
        proc.stop()
    dumps = sorted(d.glob("callgrind.out.*"), key=lambda p: p.stat().st_mtime)
    ir, mallocs = callgrind_counts(dumps[0]) if dumps else (0, 0)
    return {"requests": requests, "ir": ir / requests, "mallocs": mallocs / requests}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tether", default=str(compare.BUILD / "tether"))
    p.add_argument("--backend", default=str(compare.BUILD / "tools" / "tether-demo-backend"))
    p.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    p.add_argument("--haproxy", default=shutil.which("haproxy") or "/usr/sbin/haproxy")
    p.add_argument("--wrk", default=shutil.which("wrk") or "wrk")
    p.add_argument("--scenarios", default="a,d,e")
    p.add_argument("--proxies", default="tether,nginx,haproxy", help="for the syscall counts")
    p.add_argument("--duration", type=int, default=3, help="seconds of each measured wrk run")
    p.add_argument("--top", type=int, default=8, help="syscalls shown per proxy")
    p.add_argument("--no-callgrind", action="store_true")
    p.add_argument("--no-syscalls", action="store_true")
    a = p.parse_args()
    a.workers = 1
    keys = [k for k in a.scenarios.split(",") if k]
    proxies = [x for x in a.proxies.split(",") if x]
    if bad := [k for k in keys if k not in PATHS] + [x for x in proxies if x not in compare.PROXIES]:
        p.error(f"unknown scenario or proxy: {bad}")
    tmp = Path(tempfile.mkdtemp(prefix="tether-perreq-"))
    tmp.chmod(0o755)
    s = compare.Setup(a, tmp, compare.raise_nofile())
    print(f"# per_request.py, commit {compare.git_commit()}, load average {compare.load_average()}")
    try:
        s.backend_port = compare.start_backend(s)
        if not a.no_syscalls:
            for name in proxies:
                s.procs[name], s.ports[name] = compare.start_proxy(s, name)
            for key in keys:
                for name in proxies:
                    r = syscalls(s, key, name, s.procs[name], s.ports[name])
                    top = ", ".join(f"{k} {v:.2f}" for k, v in r["top"])
                    print(f"{NAMES[key]:24} {name:8} syscalls/req {r['total']:6.2f}  "
                          f"ctx switches/req {r['switches']:5.2f}  ({r['requests']} req; {top})",
                          flush=True)
        if not a.no_callgrind:
            for key in keys:
                r = callgrind(s, key)
                print(f"{NAMES[key]:24} tether   instructions/req {r['ir']:10,.0f}  "
                      f"mallocs/req {r['mallocs']:7.2f}  ({r['requests']} req under callgrind)",
                      flush=True)
    finally:
        compare.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"# load average at the end {compare.load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
