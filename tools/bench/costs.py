#!/usr/bin/env python3
"""Counts that hardly move with other load on the machine, shared by per_request.py (per HTTP
request) and tunnel_cost.py (per WebSocket message):

- perf_syscalls: the syscalls (all, and the most frequent ones) and context switches of a proxy's
  processes per unit of work, under `perf stat -e raw_syscalls:sys_enter,syscalls:sys_enter_*,
  context-switches -p PIDS` during one measured run;
- callgrind: tether under `valgrind --tool=callgrind`, its counters zeroed after a warm-up and
  dumped after one measured run (`callgrind_control`): instructions (Ir, user space) and calls
  of malloc per unit.

A unit of work is what `load(port, seconds)` returns: the requests wrk completed, the messages
echoed. Processes are compare.py's (compare.Proc, its configurations); a run's frame is
session(). Python 3.11 standard library only.
"""
from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare  # noqa: E402  (Proc, configs: one definition of the setups)

Load = Callable[[int, int], int]  # (port, seconds) -> units of work done


def perf_syscalls(s: compare.Setup, tag: str, pid: int, port: int, load: Load, top: int) -> dict:
    """After a 1 s warm-up, one load run of --duration seconds under perf stat over pid and its
    children: units done, syscalls and context switches per unit, the `top` syscalls per unit."""
    pids = ",".join(str(p) for p in compare.process_tree(pid))
    load(port, 1)  # warm-up: pooled connections, caches
    out = s.tmp / f"perf-{tag}.txt"
    perf = subprocess.Popen(["perf", "stat", "-x", ",", "-o", str(out), "-e",
                             "raw_syscalls:sys_enter,syscalls:sys_enter_*,context-switches",
                             "-p", pids], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # perf attaches
    try:
        units = load(port, s.args.duration)
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
    per = {k: v / units for k, v in counts.items() if v}
    return {"units": units, "total": total / units, "switches": switches / units,
            "top": sorted(per.items(), key=lambda kv: -kv[1])[:top]}


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


def start_tether(s: compare.Setup, tag: str, servers: list[int],
                 wrap: list[str] | None = None) -> tuple[compare.Proc, int, Path]:
    """tether (one worker, compare.py's configuration) in its own directory s.tmp/tag, run under
    `wrap` (e.g. valgrind) when given; (process, port, directory) once it answers."""
    port = compare.free_port()
    d = s.tmp / tag
    d.mkdir(exist_ok=True)
    cfg = d / "tether.yaml"
    cfg.write_text(compare.tether_config(s, port, servers, 1))
    proc = compare.Proc(tag, (wrap or []) + [s.args.tether, "-c", str(cfg)], s.tmp)
    compare.wait_http_ready(port, proc, timeout=60)
    return proc, port, d


def callgrind(s: compare.Setup, tag: str, load: Load) -> dict:
    """tether under callgrind before the backend: after a 2 s warm-up, the units of one load
    run of --duration seconds, and instructions and mallocs per unit."""
    out = s.tmp / tag / "callgrind.out"
    proc, port, d = start_tether(s, tag, [s.backend_port],
                                 ["valgrind", "--tool=callgrind", "--dump-instr=no",
                                  f"--callgrind-out-file={out}"])
    try:
        load(port, 2)  # warm-up
        ctl = ["callgrind_control", "-z", str(proc.pid)]
        subprocess.run(ctl, capture_output=True, timeout=60, check=True)
        units = load(port, s.args.duration)
        ctl[1] = "-d"
        subprocess.run(ctl, capture_output=True, timeout=60, check=True)
    finally:
        proc.stop()
    dumps = sorted(d.glob("callgrind.out.*"), key=lambda p: p.stat().st_mtime)
    ir, mallocs = callgrind_counts(dumps[0]) if dumps else (0, 0)
    if dumps and getattr(s.args, "callgrind_out", ""):
        keep = Path(s.args.callgrind_out)
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copy(dumps[0], keep / f"{tag}.callgrind.out")
    return {"units": units, "ir": ir / units, "mallocs": mallocs / units}


def add_args(p: argparse.ArgumentParser, *tools: str) -> None:
    """The options both scripts take: the programs, --proxies, --duration, --no-callgrind,
    --no-syscalls."""
    compare.add_tool_args(p, *tools)
    p.add_argument("--proxies", default="tether,nginx,haproxy", help="for the syscall counts")
    p.add_argument("--duration", type=int, default=3, help="seconds of each measured run")
    p.add_argument("--no-callgrind", action="store_true")
    p.add_argument("--no-syscalls", action="store_true")
    p.add_argument("--callgrind-out", default="",
                   help="directory to keep each callgrind dump in (callgrind_annotate reads them)")


@contextlib.contextmanager
def session(a: argparse.Namespace, script: str) -> Iterator[compare.Setup]:
    """A temporary directory and the backend (one worker: a.workers = 1), a header and a footer
    line with the load average; every process started inside is stopped by PID at the end."""
    a.workers = 1
    tmp = Path(tempfile.mkdtemp(prefix=f"tether-{Path(script).stem}-"))
    tmp.chmod(0o755)
    s = compare.Setup(a, tmp, compare.raise_nofile())
    print(f"# {script}, commit {compare.git_commit()}, load average {compare.load_average()}")
    try:
        s.backend_port = compare.start_backend(s)
        yield s
    finally:
        compare.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"# load average at the end {compare.load_average()}")
