"""compare.py's parts, 3 of 5: the load clients, one run each: wrk (scenarios a, d, e, w),
tether-ws-bench echo (b) and idle (c), with the proxy's CPU and throttling over the run.

Imported by compare.py (which re-exports it). Single-threaded, standard library only."""
from __future__ import annotations

import json
import re
import selectors
import subprocess
import time

from compare_procs import (BIG_BYTES, BIG_CONNS, CGROUPS, CONNS_PER_BACKEND, FD_MARGIN, IDLE_SETTLE,
                           PORTS_PER_SOURCE, WRK_CONNS, WS_CONNS, WS_SIZE, cpu_seconds, log,
                           rss_bytes)
from compare_setup import Setup, load_argv, start_backend, start_proxy

# ------------------------------------------------------------------------------ clients
UNITS_US = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6}


def to_us(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"unknown wrk duration {text!r}")
    return float(m.group(1)) * UNITS_US[m.group(2)]


def throttle_start(pid: int | None) -> dict[str, int] | None:
    """--cpu-budget: the proxy's cgroup's cpu.stat before a client run (None without a budget)."""
    cg = CGROUPS.get(pid) if pid else None
    return cg.stat() if cg else None


def throttle_use(pid: int, before: dict[str, int] | None) -> dict[str, float]:
    """--cpu-budget: CFS periods in which the proxy's quota ran out over one client run."""
    cg = CGROUPS.get(pid)
    if before is None or cg is None:
        return {}
    after = cg.stat()
    periods = after.get("nr_periods", 0) - before.get("nr_periods", 0)
    throttled = after.get("nr_throttled", 0) - before.get("nr_throttled", 0)
    return {"throttled": throttled,
            "throttled_pct": 100 * throttled / periods if periods else float("nan")}


def cpu_use(pid: int, cpu0: float, t0: float, ops: int) -> dict[str, float]:
    """The proxy's CPU over one client run: share of one core, and CPU time per request or
    message (less sensitive than throughput to other load on the machine)."""
    cpu = cpu_seconds(pid) - cpu0
    return {"cpu_pct": 100 * cpu / (time.monotonic() - t0),
            "cpu_us_per_op": cpu * 1e6 / ops if ops else float("nan")}


def run_wrk(s: Setup, port: int, pid: int | None, d: int, path: str = "/",
            conns: int = WRK_CONNS, close: bool = False, body: int = 0,
            scheme: str = "http") -> dict[str, float]:
    """close: every request on a new connection; body: response body size, for MB/s;
    scheme: https for a TLS listener (tls_compare.py)."""
    argv = [s.args.wrk, "-t1", f"-c{conns}", f"-d{d}s", "--latency"]
    if close:
        argv += ["-H", "Connection: close"]
    argv.append(f"{scheme}://127.0.0.1:{port}{path}")
    cpu0, t0 = (cpu_seconds(pid), time.monotonic()) if pid else (0.0, 0.0)
    thr0 = throttle_start(pid)
    r = subprocess.run(load_argv(s, argv), capture_output=True, text=True, timeout=d + 60)
    out = r.stdout
    if r.returncode != 0 or "Requests/sec" not in out:
        raise RuntimeError(f"wrk failed ({r.returncode}): {out}{r.stderr}")
    res = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
           "p50_ms": to_us(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)) / 1e3,
           "p99_ms": to_us(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)) / 1e3}
    if body:
        res["mbps"] = res["rps"] * body / 1e6
    errors = 0
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors += sum(int(x) for x in m.groups())
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += int(m.group(1))
    res["errors"] = errors
    if pid:
        requests = int(re.search(r"(\d+) requests in", out).group(1))
        res |= cpu_use(pid, cpu0, t0, requests) | throttle_use(pid, thr0)
    return res


def last_json(text: str) -> dict:
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"no JSON in output: {text!r}")


def run_ws_echo(s: Setup, port: int, pid: int | None, d: int) -> dict[str, float]:
    argv = [s.args.ws_bench, "echo", "--host", "127.0.0.1", "--port", str(port), "--conns",
            str(WS_CONNS), "--size", str(WS_SIZE), "--seconds", str(d)]
    cpu0, t0 = (cpu_seconds(pid), time.monotonic()) if pid else (0.0, 0.0)
    thr0 = throttle_start(pid)
    r = subprocess.run(load_argv(s, argv), capture_output=True, text=True, timeout=d + 60)
    j = last_json(r.stdout)
    if r.stderr.strip():
        log(f"tether-ws-bench echo: {r.stderr.strip()}")
    res = {"mps": j["msgs_per_s"], "p50_us": j["p50_us"], "p99_us": j["p99_us"],
           "errors": j["failed"] + j["errors"] + (1 if j["timed_out"] else 0)}
    if pid:
        res |= cpu_use(pid, cpu0, t0, j["messages"]) | throttle_use(pid, thr0)
    return res


def idle_sources(n: int) -> str:
    count = max(1, -(-n // PORTS_PER_SOURCE))
    return ",".join(f"127.0.0.{i + 1}" for i in range(count))


def idle_conns(s: Setup) -> int:
    """--idle-conns, or fewer when one proxy process may not hold that many descriptors."""
    return min(s.args.idle_conns, (s.nofile - FD_MARGIN) // 2)


def idle_servers(s: Setup) -> list[int]:
    """One backend per CONNS_PER_BACKEND tunnels: a proxy connects to each from 127.0.0.1,
    so each backend port brings its own ~28k source ports."""
    want = max(1, -(-idle_conns(s) // CONNS_PER_BACKEND))
    while 1 + len(s.idle_backends) < want:
        s.idle_backends.append(start_backend(s, f"backend-idle{len(s.idle_backends) + 1}"))
    return [s.backend_port] + s.idle_backends[:want - 1]


def read_line(proc: subprocess.Popen, deadline: float) -> str | None:
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        while time.monotonic() < deadline:
            if sel.select(timeout=max(0.0, min(1.0, deadline - time.monotonic()))):
                line = proc.stdout.readline()
                return line.decode(errors="replace") if line else None
    finally:
        sel.close()
    return None


def run_load(s: Setup, key: str, port: int, pid: int | None, d: int) -> dict[str, float]:
    """One client run of scenario a, d, e or b (w runs a) against port."""
    if key in "aw":
        return run_wrk(s, port, pid, d)
    if key == "d":
        return run_wrk(s, port, pid, d, close=True)
    if key == "e":
        return run_wrk(s, port, pid, d, path=f"/bytes?n={BIG_BYTES}", conns=BIG_CONNS, body=BIG_BYTES)
    return run_ws_echo(s, port, pid, d)


def run_idle(s: Setup, name: str, rnd: int) -> dict[str, float]:
    """A fresh proxy per round, so the baseline has never seen a connection."""
    n = idle_conns(s)
    proxy, port = start_proxy(s, name, tag=f"-idle{rnd}", servers=idle_servers(s))
    try:
        time.sleep(IDLE_SETTLE)
        before = rss_bytes(proxy.pid)
        argv = [s.args.ws_bench, "idle", "--host", "127.0.0.1", "--port", str(port), "--conns",
                str(n), "--hold-seconds", str(s.args.idle_hold), "--sources", idle_sources(n)]
        err = open(s.tmp / f"ws-idle-{name}{rnd}.stderr", "wb")
        client = subprocess.Popen(load_argv(s, argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=err)
        try:
            deadline = time.monotonic() + s.args.idle_hold
            line = read_line(client, deadline)
            if not line or not line.startswith("ready"):
                raise RuntimeError(f"tether-ws-bench idle did not get ready: {line!r}")
            ready = int(line.split()[1])
            time.sleep(IDLE_SETTLE)
            after = rss_bytes(proxy.pid)
            # closing stdin ends the hold: the client closes every tunnel and reports
            out, _ = client.communicate(timeout=120)
            j = last_json(out.decode(errors="replace"))
        finally:
            if client.poll() is None:
                client.kill()  # our own child, by PID
                client.wait()
            err.close()
        stderr = (s.tmp / f"ws-idle-{name}{rnd}.stderr").read_text(errors="replace").strip()
        if stderr:
            log(f"tether-ws-bench idle via {name}: {stderr}")
        return {"rss_before_mib": before / 2**20, "rss_after_mib": after / 2**20,
                "bytes_per_tunnel": (after - before) / ready if ready else float("nan"),
                "opened": j["opened"], "failed": j["failed"], "close_failed": j["close_failed"],
                "errors": j["failed"] + j["close_failed"]}
    finally:
        proxy.stop()
