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

Builds nothing (uses build/); starts its own processes, bounds every wait, stops only what it
started, by PID. Python 3.11 standard library only.
"""
from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare  # noqa: E402  (Proc, configs: one definition of the setups)
import per_request  # noqa: E402  (callgrind dump parsing)


def echo(s: compare.Setup, port: int, d: int) -> int:
    """One echo run of d seconds; the messages echoed (failures raise)."""
    argv = [s.args.ws_bench, "echo", "--host", "127.0.0.1", "--port", str(port), "--conns",
            str(compare.WS_CONNS), "--size", str(compare.WS_SIZE), "--seconds", str(d)]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=d + 60)
    j = compare.last_json(r.stdout)
    if j["failed"] or j["errors"] or j["timed_out"]:
        raise RuntimeError(f"tether-ws-bench echo failed: {r.stdout}{r.stderr}")
    return int(j["messages"])


def syscalls(s: compare.Setup, name: str, proc: compare.Proc, port: int) -> dict:
    pids = ",".join(str(p) for p in compare.process_tree(proc.pid))
    echo(s, port, 1)  # warm-up
    out = s.tmp / f"perf-{name}.txt"
    perf = subprocess.Popen(["perf", "stat", "-x", ",", "-o", str(out), "-e",
                             "raw_syscalls:sys_enter,syscalls:sys_enter_*,context-switches",
                             "-p", pids], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # perf attaches
    try:
        msgs = echo(s, port, s.args.duration)
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
    per = {k: v / msgs for k, v in counts.items() if v}
    return {"msgs": msgs, "total": total / msgs, "switches": switches / msgs,
            "top": sorted(per.items(), key=lambda kv: -kv[1])[:6]}


def start_tether(s: compare.Setup, tag: str, servers: list[int], wrap: list[str]) -> tuple:
    port = compare.free_port()
    d = s.tmp / tag
    d.mkdir()
    cfg = d / "tether.yaml"
    cfg.write_text(compare.tether_config(s, port, servers, 1))
    proc = compare.Proc(tag, wrap + [s.args.tether, "-c", str(cfg)], s.tmp)
    compare.wait_http_ready(port, proc, timeout=60)
    return proc, port, d


def callgrind(s: compare.Setup) -> dict:
    out = s.tmp / "callgrind.out"
    proc, port, d = start_tether(s, "callgrind", [s.backend_port],
                                 ["valgrind", "--tool=callgrind", "--dump-instr=no",
                                  f"--callgrind-out-file={out}"])
    try:
        echo(s, port, 2)  # warm-up
        ctl = ["callgrind_control", "-z", str(proc.pid)]
        subprocess.run(ctl, capture_output=True, timeout=60, check=True)
        msgs = echo(s, port, s.args.duration)
        ctl[1] = "-d"
        subprocess.run(ctl, capture_output=True, timeout=60, check=True)
    finally:
        proc.stop()
    dumps = sorted(s.tmp.glob("callgrind.out.*"), key=lambda p: p.stat().st_mtime)
    ir, mallocs = per_request.callgrind_counts(dumps[0]) if dumps else (0, 0)
    return {"msgs": msgs, "ir": ir / msgs, "mallocs": mallocs / msgs}


def idle(s: compare.Setup) -> dict:
    n = s.args.idle_conns
    proc, port, _ = start_tether(s, "idle", compare.idle_servers(s), [])
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
    p.add_argument("--tether", default=str(compare.BUILD / "tether"))
    p.add_argument("--backend", default=str(compare.BUILD / "tools" / "tether-demo-backend"))
    p.add_argument("--ws-bench", default=str(compare.BUILD / "tools" / "bench" / "tether-ws-bench"))
    p.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    p.add_argument("--haproxy", default=shutil.which("haproxy") or "/usr/sbin/haproxy")
    p.add_argument("--proxies", default="tether,nginx,haproxy", help="for the syscall counts")
    p.add_argument("--duration", type=int, default=3, help="seconds of each measured echo run")
    p.add_argument("--idle-conns", type=int, default=5000)
    p.add_argument("--no-callgrind", action="store_true")
    p.add_argument("--no-syscalls", action="store_true")
    p.add_argument("--no-idle", action="store_true")
    a = p.parse_args()
    a.workers = 1
    proxies = [x for x in a.proxies.split(",") if x]
    if bad := [x for x in proxies if x not in compare.PROXIES]:
        p.error(f"unknown proxy: {bad}")
    tmp = Path(tempfile.mkdtemp(prefix="tether-tunnelcost-"))
    tmp.chmod(0o755)
    s = compare.Setup(a, tmp, compare.raise_nofile())
    a.idle_conns = min(a.idle_conns, (s.nofile - compare.FD_MARGIN) // 2)
    print(f"# tunnel_cost.py, commit {compare.git_commit()}, load average {compare.load_average()}")
    try:
        s.backend_port = compare.start_backend(s)
        if not a.no_syscalls:
            for name in proxies:
                proc, port = compare.start_proxy(s, name)
                r = syscalls(s, name, proc, port)
                proc.stop()
                top = ", ".join(f"{k} {v:.3f}" for k, v in r["top"])
                print(f"ws echo  {name:8} syscalls/msg {r['total']:6.3f}  ctx switches/msg "
                      f"{r['switches']:5.3f}  ({r['msgs']} msgs; {top})", flush=True)
        if not a.no_callgrind:
            r = callgrind(s)
            print(f"ws echo  tether   instructions/msg {r['ir']:8,.0f}  mallocs/msg "
                  f"{r['mallocs']:6.3f}  ({r['msgs']} msgs under callgrind)", flush=True)
        if not a.no_idle:
            r = idle(s)
            print(f"idle     tether   bytes/tunnel {r['per_tunnel']:8,.0f}  ({r['tunnels']} tunnels; "
                  f"RSS {r['before'] / 2**20:.1f} -> {r['after'] / 2**20:.1f} MiB)", flush=True)
    finally:
        compare.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"# load average at the end {compare.load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
