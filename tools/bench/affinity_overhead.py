#!/usr/bin/env python3
"""Cost of stickiness: tether with affinity none vs sid vs cookie vs ip_hash, side by side.

    python3 tools/bench/affinity_overhead.py [--rounds 3] [--duration 5] [--workers 1] [--redis]
                                             [--callgrind | --syscalls] [--modes none,none-sio,sid,...]
                                             [--cpu-budget 0.2 [--cpu-period-us 10000]]

One demo backend, one tether process per mode, wrk -t1 -c64 (--conns) against each after a
--warmup run, interleaved over --rounds rounds; prints medians of requests/s, proxy CPU per
request and proxy CPU %, with ratios to `none` (of the medians, and the median of the rounds'
own ratios: a round's runs are seconds apart, so slow drift of the machine cancels in them).
Every sticky request takes the routing path that a live session takes:
  none-sio GET /socket.io/?EIO=4&transport=polling&sid=bench with `affinity: none`: the very
           request of `sid`, so sid / none-sio is the cost of the affinity alone (`none` asks
           for / and the backend answers it with other bytes)
  sid      GET /socket.io/?EIO=4&transport=polling&sid=bench  (a local-table hit: the sid is
           bound first through the fallback cookie of a handshake)
  cookie   GET / with the signed tether cookie of a first answer (HMAC check per request)
  ip_hash  GET / from 127.0.0.1 (a local-table hit after the first placement)
With --redis, a redis-server is started and three more processes run with `redis:` set:
  sid+redis, ip_hash+redis   the same sticky paths with the shared table configured (Redis is
                             touched only on TTL refreshes: at most once per ttl/10 per key)
  handshake, handshake+redis GET /socket.io/?EIO=4&transport=polling: every request is a new
                             Engine.IO session whose sid is bound before the answer is
                             released, so the second pays one Redis round trip per request.
With --callgrind, each mode's tether runs once under `valgrind --tool=callgrind` instead:
counters zeroed after a warm-up, dumped after one wrk run, and the instructions and malloc
calls per request printed (user space only; they do not depend on the machine's load).
With --syscalls, each mode's tether runs once under `perf stat` instead (costs.perf_syscalls,
as per_request.py): syscalls and context switches per request, the kernel's share of the
work, which the affinity mode should not change.
With --cpu-budget X, compare.py's proxy-bound mode: each tether runs in a cgroup of its own
with a CFS quota of X CPUs per worker (tools/bench/cpu_budget.py), wrk, the backend and
redis-server in one without a quota, so that the proxy's CPU, not the client beside it, bounds
requests/s, and requests/s vs none is the cost of the affinity in throughput; a column adds
the CFS periods in which the quota ran out. The cgroups are removed at the end.
Uses the process and cgroup helpers of compare.py; stops only what it started, by PID.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare  # noqa: E402

MODES = ["none", "none-sio", "sid", "cookie", "ip_hash"]
SIO_URL = "/socket.io/?EIO=4&transport=polling&sid=bench"


def config(mode: str, port: int, backend: int, workers: int, redis_port: int = 0) -> str:
    affinity = mode.split("+")[0].replace("handshake", "sid").replace("none-sio", "none")
    redis = f"redis: {{address: 127.0.0.1:{redis_port}}}\n" if mode.endswith("+redis") else ""
    return f"""workers: {workers}
listen: [{{address: 127.0.0.1:{port}, upstream: u}}]
admin: off
access_log: {{path: off}}
{redis}upstreams:
  u:
    affinity: {affinity}
    balance: round_robin
    cookie: {{secret: bench-secret}}
    servers: [{{name: s1, address: 127.0.0.1:{backend}}}]
"""


def get(url: str, headers: dict[str, str] | None = None) -> tuple[str, str]:
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.read().decode(), r.headers.get("Set-Cookie", "")


def prepare(mode: str, port: int) -> tuple[str, list[str]]:
    """The URL and headers wrk sends, after the binding a live session would have."""
    base = f"http://127.0.0.1:{port}"
    mode = mode.split("+")[0]
    if mode == "handshake":
        return base + "/socket.io/?EIO=4&transport=polling", []
    if mode == "none-sio":
        get(base + SIO_URL)
        return base + SIO_URL, []
    if mode == "sid":
        _, cookie = get(base + "/socket.io/?EIO=4&transport=polling")
        token = cookie.split(";")[0]
        url = base + SIO_URL
        get(url, {"Cookie": token})  # unbound sid + valid cookie -> bound
        return url, []
    if mode == "cookie":
        _, cookie = get(base + "/")
        return base + "/", ["-H", "Cookie: " + cookie.split(";")[0]]
    get(base + "/")
    return base + "/", []


def run(s: compare.Setup, url: str, extra: list[str], pid: int, duration: int,
        conns: int = 64) -> dict[str, float]:
    """One wrk run against one tether (pid): requests/s, the proxy's CPU per request and CPU %,
    and under --cpu-budget the share of CFS periods in which its quota ran out."""
    before = compare.throttle_start(pid)
    cpu0, t0 = compare.cpu_seconds(pid), time.monotonic()
    argv = ["wrk", "-t1", f"-c{conns}", f"-d{duration}s", *extra, url]
    out = subprocess.run(compare.load_argv(s, argv), capture_output=True, text=True,
                         timeout=duration + 60).stdout
    rps = float(out.split("Requests/sec:")[1].split()[0])
    requests = int(out.split(" requests in")[0].split()[-1])
    use = compare.cpu_use(pid, cpu0, t0, requests)
    return {"rps": rps, "requests": requests, "cpu_us": use["cpu_us_per_op"],
            "cpu_pct": use["cpu_pct"], "bad": "Non-2xx" in out,
            "elapsed": time.monotonic() - t0, **compare.throttle_use(pid, before)}


def start_targets(s: compare.Setup, modes: list[str], bport: int,
                  redis_port: int) -> dict[str, tuple[compare.Proc, str, list[str]]]:
    """One tether per mode (under --cpu-budget each in its own cgroup), ready and bound as a
    live session would be: mode -> (process, URL, wrk's extra arguments)."""
    a = s.args
    targets = {}
    for mode in modes:
        port = compare.free_port()
        cfg = s.tmp / f"{mode}.yaml"
        cfg.write_text(config(mode, port, bport, a.workers, redis_port))
        proc = compare.start_budgeted(s, f"tether-{mode}", [a.tether, "-c", str(cfg)], a.workers)
        compare.wait_http_ready(port, proc)
        targets[mode] = (proc, *prepare(mode, port))
    return targets


def callgrind(s: compare.Setup, modes: list[str], bport: int, redis_port: int) -> int:
    """Instructions and mallocs per request of each mode, one tether under callgrind each."""
    import costs  # noqa: E402  (its callgrind dump reader)
    a, tmp = s.args, s.tmp
    print("| affinity | instructions/request | vs none | mallocs/request | requests |")
    print("|---|---:|---:|---:|---:|")
    base = None
    for i, mode in enumerate(modes):
        port = compare.free_port()
        d = tmp / f"callgrind-{i}-{mode}"
        d.mkdir()
        cfg = d / "tether.yaml"
        cfg.write_text(config(mode, port, bport, a.workers, redis_port))
        out = d / "callgrind.out"
        proc = compare.Proc(f"callgrind-{mode}", ["valgrind", "--tool=callgrind",
                                                  "--dump-instr=no", f"--callgrind-out-file={out}",
                                                  a.tether, "-c", str(cfg)], tmp)
        try:
            compare.wait_http_ready(port, proc, timeout=60)
            url, extra = prepare(mode, port)
            run(s, url, extra, proc.pid, 2, a.conns)  # warm-up
            ctl = ["callgrind_control", "-z", str(proc.pid)]
            subprocess.run(ctl, capture_output=True, timeout=60, check=True)
            requests = int(run(s, url, extra, proc.pid, a.duration, a.conns)["requests"])
            ctl[1] = "-d"
            subprocess.run(ctl, capture_output=True, timeout=60, check=True)
        finally:
            proc.stop()
        dumps = sorted(d.glob("callgrind.out.*"), key=lambda p: p.stat().st_mtime)
        ir, mallocs = costs.callgrind_counts(dumps[0]) if dumps else (0, 0)
        if a.keep:
            Path(a.keep).mkdir(parents=True, exist_ok=True)
            for j, dump in enumerate(dumps):
                (Path(a.keep) / f"callgrind-{i}-{mode}.{j}").write_bytes(dump.read_bytes())
        ir_req = ir / max(requests, 1)
        base = base or ir_req
        print(f"| {mode} | {ir_req:,.0f} | {ir_req / base:.3f} | "
              f"{mallocs / max(requests, 1):.2f} | {requests} |", flush=True)
    return 0


def syscalls(s: compare.Setup, modes: list[str],
             targets: dict[str, tuple[compare.Proc, str, list[str]]]) -> int:
    """Syscalls and context switches per request of each mode, under perf stat."""
    import costs  # noqa: E402  (its perf stat reader)
    print("| affinity | syscalls/request | context switches/request | most frequent, per request |")
    print("|---|---:|---:|---|")
    for mode in modes:
        proc, url, extra = targets[mode]
        r = costs.perf_syscalls(
            s, mode, proc.pid, 0,
            lambda _port, secs: int(run(s, url, extra, proc.pid, secs, s.args.conns)["requests"]), 4)
        top = ", ".join(f"{name} {n:.2f}" for name, n in r["top"])
        print(f"| {mode} | {r['total']:.2f} | {r['switches']:.3f} | {top} |", flush=True)
    return 0


def handshake_latency(url: str, n: int) -> tuple[float, float]:
    """Median and p99 of n sequential handshakes on one keep-alive connection."""
    import http.client
    from urllib.parse import urlsplit
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
    path = u.path + "?" + u.query
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        conn.request("GET", path)
        r = conn.getresponse()
        r.read()
        samples.append(time.perf_counter() - t0)
    conn.close()
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99)]


def report(s: compare.Setup, modes: list[str], results: dict[str, list[dict]]) -> None:
    a = s.args
    budget = (f", each tether held to {a.cpu_budget:g} CPU per worker (period {a.cpu_period_us} us)"
              if s.budgets else "")
    print(f"# workers {a.workers}, wrk -t1 -c{a.conns}, {a.rounds} rounds x {a.duration} s"
          f"{budget}; load {compare.load_average()} at the end; medians")
    thr = s.budgets is not None
    print("| affinity | requests/s | vs none | vs none, per round | proxy CPU us/request | vs none "
          "| proxy CPU % |" + (" periods throttled % |" if thr else ""))
    print("|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if thr else ""))
    med = {m: {k: statistics.median(x[k] for x in v) for k in ("rps", "cpu_us", "cpu_pct")}
           for m, v in results.items()}
    base = results["none"]
    for mode in modes:
        m, rounds = med[mode], results[mode]
        paired = statistics.median(r["rps"] / b["rps"] for r, b in zip(rounds, base))
        row = (f"| {mode} | {m['rps']:,.0f} | {m['rps'] / med['none']['rps']:.3f} | {paired:.3f} | "
               f"{m['cpu_us']:.2f} | {m['cpu_us'] / med['none']['cpu_us']:.3f} | "
               f"{m['cpu_pct']:.1f} |")
        if thr:
            row += f" {statistics.median(x.get('throttled_pct', float('nan')) for x in rounds):.0f} |"
        print(row)
    if not a.redis:
        return
    print()
    for b in ("sid", "ip_hash", "handshake"):
        if b not in med or b + "+redis" not in med:  # not in --modes
            continue
        paired = statistics.median(r["rps"] / x["rps"] for r, x in zip(results[b + "+redis"],
                                                                          results[b]))
        print(f"{b}+redis vs {b}: requests/s {med[b + '+redis']['rps'] / med[b]['rps']:.3f} "
              f"(per round {paired:.3f}), CPU/request "
              f"{med[b + '+redis']['cpu_us'] / med[b]['cpu_us']:.3f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    compare.add_tool_args(ap, "tether", "backend")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1,
                    help="seconds of discarded load per mode before the rounds")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--redis", action="store_true", help="also run with a shared Redis table")
    ap.add_argument("--callgrind", action="store_true",
                    help="instructions and mallocs per request under callgrind instead")
    ap.add_argument("--syscalls", action="store_true",
                    help="syscalls and context switches per request under perf stat instead")
    ap.add_argument("--conns", type=int, default=64, help="wrk connections")
    ap.add_argument("--modes", default="", help="comma-separated subset of the modes")
    ap.add_argument("--keep", default="", help="--callgrind: copy the dumps into this directory")
    compare.add_budget_args(ap)
    a = ap.parse_args()
    compare.check_budget_args(ap, a)
    if a.callgrind and a.cpu_budget is not None:
        ap.error("--callgrind counts instructions, which no budget changes: not with --cpu-budget")
    modes = MODES + (["sid+redis", "ip_hash+redis", "handshake", "handshake+redis"]
                     if a.redis else [])
    if a.modes:
        modes = [m for m in a.modes.split(",") if m]
        if "none" not in modes:
            modes.insert(0, "none")
    s = compare.Setup(a, Path(tempfile.mkdtemp(prefix="tether-affinity-bench-")),
                      compare.raise_nofile())
    compare.open_budgets(s, "affinity_overhead.py")
    try:
        bport = compare.start_backend(s)
        redis_port = 0
        if a.redis:
            redis_port = compare.free_port()
            compare.Proc("redis", compare.load_argv(s, [
                "redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no"]), s.tmp)
            time.sleep(0.5)
        if a.callgrind:
            return callgrind(s, modes, bport, redis_port)
        targets = start_targets(s, modes, bport, redis_port)
        if a.syscalls:
            return syscalls(s, modes, targets)
        if a.warmup > 0:
            for mode in modes:
                proc, url, extra = targets[mode]
                run(s, url, extra, proc.pid, a.warmup, a.conns)
        results: dict[str, list[dict]] = {m: [] for m in modes}
        for rnd in range(a.rounds):
            for mode in modes:
                proc, url, extra = targets[mode]
                r = run(s, url, extra, proc.pid, a.duration, a.conns)
                thr = f", {r['throttled_pct']:.0f}% throttled" if "throttled_pct" in r else ""
                compare.log(f"round {rnd + 1} {mode}: {r['rps']:,.0f} req/s, "
                            f"{r['cpu_us']:.2f} us CPU/request, {r['cpu_pct']:.1f}% CPU{thr}"
                            f"{' NON-2xx!' if r['bad'] else ''}")
                results[mode].append(r)
        report(s, modes, results)
        latency_modes = [m for m in ("handshake", "handshake+redis") if m in targets]
        if latency_modes:
            print("handshake latency (1 connection, 2000 sequential handshakes, median / p99):")
        for mode in latency_modes:
            proc, url, _ = targets[mode]
            lat = handshake_latency(url, 2000)
            print(f"  {mode}: {lat[0] * 1e6:.0f} us / {lat[1] * 1e6:.0f} us")
        return 0
    finally:
        compare.stop_all()
        if s.budgets is not None:  # also on an error or Ctrl-C: no cgroup is left behind
            for err in s.budgets.close():
                compare.log(err)


if __name__ == "__main__":
    sys.exit(main())
