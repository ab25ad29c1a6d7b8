#!/usr/bin/env python3
"""What observability costs: proxy throughput with metrics and access log off vs on, and the
time of one /metrics scrape with many servers.

    python3 tools/bench/metrics_overhead.py [--build build] [--rounds 3] [--duration 5]
                                            [--servers 1000] [--scrapes 50]

Throughput: one tether-demo-backend (--threads 1) behind tether (`workers: 1`), `wrk -t1 -c64
-dD GET /`, three configurations run interleaved for --rounds rounds (medians shown):
  off          admin off, access_log off (counters are still kept: they cannot be turned off)
  metrics      admin on and /metrics scraped every second during the run (Prometheus at 1 s,
               15x its default rate), access_log off
  metrics+log  the same plus the access log (combined format) written to a file
Scrape: tether (`workers: 2`) with --servers servers in 10 upstreams (affinity cookie, no
health checks; nothing needs to listen there), after traffic on one of them; --scrapes
sequential GET /metrics on one keep-alive connection: median and max time, size, samples.
tether's CPU time per request (utime + stime from /proc over the wrk run) is printed beside
requests/s: on a shared machine it is far steadier than throughput.

Builds nothing; starts its processes on 127.0.0.1 free ports and stops them by PID. Python 3.11
standard library only.
"""
from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import REPO, cpu_seconds, free_port  # noqa: E402  (one definition of each)

HOST = "127.0.0.1"


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {port}")
            time.sleep(0.05)


class Proc:
    def __init__(self, args: list[str], **kw):
        self.p = subprocess.Popen(args, stdin=subprocess.DEVNULL, **kw)

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)


def start_backend(build: Path) -> tuple[Proc, int]:
    proc = Proc([str(build / "tools" / "tether-demo-backend"), "--name", "s1", "--listen",
                 f"{HOST}:0", "--threads", "1"], stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL)
    line = proc.p.stdout.readline().decode()
    return proc, int(re.search(r":(\d+)$", line.strip()).group(1))


def start_tether(build: Path, tmp: str, text: str, ports: list[int]) -> Proc:
    path = os.path.join(tmp, f"tether-{time.monotonic_ns()}.yaml")
    with open(path, "w") as f:
        f.write(text)
    proc = Proc([str(build / "tether"), "-c", path], stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL)
    for p in ports:
        wait_port(p)
    return proc


def throughput_config(port: int, backend: int, admin: int | None, log: str | None) -> str:
    return f"""workers: 1
listen:
  - {{address: "{HOST}:{port}", upstream: u}}
admin: {f'{{address: "{HOST}:{admin}"}}' if admin else "off"}
access_log: {{path: "{log or 'off'}", format: combined}}
upstreams:
  u:
    balance: round_robin
    servers:
      - {{name: s1, address: "{HOST}:{backend}"}}
"""


class Scraper(threading.Thread):
    """GET /metrics every `interval` seconds until stopped; counts the scrapes."""

    def __init__(self, port: int, interval: float = 1.0):
        super().__init__(daemon=True)
        self.port, self.interval, self.count = port, interval, 0
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            c = http.client.HTTPConnection(HOST, self.port, timeout=10)
            c.request("GET", "/metrics")
            c.getresponse().read()
            c.close()
            self.count += 1


def run_wrk(port: int, duration: int, pid: int | None = None) -> tuple[float, float]:
    """(requests/s, tether CPU microseconds per request)."""
    before = cpu_seconds(pid) if pid else 0.0
    out = subprocess.run(["wrk", "-t1", "-c64", f"-d{duration}s", f"http://{HOST}:{port}/"],
                         capture_output=True, text=True, timeout=duration + 30).stdout
    cpu = cpu_seconds(pid) - before if pid else 0.0
    total = int(re.search(r"(\d+) requests in", out).group(1))
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), cpu * 1e6 / max(1, total)


def throughput(build: Path, rounds: int, duration: int) -> dict[str, list[tuple[float, float]]]:
    results: dict[str, list[tuple[float, float]]] = {"off": [], "metrics": [], "metrics+log": []}
    backend, bport = start_backend(build)
    tmp = tempfile.mkdtemp(prefix="tether-bench-")
    try:
        for _ in range(rounds):
            for name in results:
                port = free_port()
                admin = free_port() if name != "off" else None
                log = os.path.join(tmp, "access.log") if name == "metrics+log" else None
                t = start_tether(build, tmp, throughput_config(port, bport, admin, log),
                                 [port] + ([admin] if admin else []))
                scraper = Scraper(admin) if admin else None
                try:
                    run_wrk(port, 1)  # warm-up
                    if scraper:
                        scraper.start()
                    results[name].append(run_wrk(port, duration, t.p.pid))
                finally:
                    if scraper:
                        scraper.stopping.set()
                        scraper.join(10)
                    t.stop()
                if log and os.path.exists(log):
                    os.remove(log)
    finally:
        backend.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return results


def scrape_time(build: Path, servers: int, scrapes: int) -> dict:
    backend, bport = start_backend(build)
    tmp = tempfile.mkdtemp(prefix="tether-bench-")
    port, admin = free_port(), free_port()
    per = servers // 10
    ups = []
    for u in range(10):
        lines = [f'      - {{name: s{u}_{i}, address: "{HOST}:{bport if i == 0 else 1}"}}'
                 for i in range(per)]
        ups.append(f"  u{u}:\n    affinity: cookie\n    servers:\n" + "\n".join(lines))
    text = f"""workers: 2
listen:
  - {{address: "{HOST}:{port}", upstream: u0}}
admin: {{address: "{HOST}:{admin}"}}
access_log: {{path: "off"}}
upstreams:
""" + "\n".join(ups) + "\n"
    t = start_tether(build, tmp, text, [port, admin])
    try:
        # Traffic pinned to the one live server of u0 (cookie), so counters have values.
        c = http.client.HTTPConnection(HOST, port, timeout=10)
        cookie = None
        for _ in range(200):
            c.request("GET", "/", headers={"Cookie": cookie} if cookie else {})
            r = c.getresponse()
            r.read()
            if r.status == 200 and not cookie:
                cookie = r.getheader("Set-Cookie").split(";")[0]
        conn = http.client.HTTPConnection(HOST, admin, timeout=30)
        times, size = [], 0
        for _ in range(scrapes):
            start = time.perf_counter()
            conn.request("GET", "/metrics")
            body = conn.getresponse().read()
            times.append(time.perf_counter() - start)
            size = len(body)
        samples = sum(1 for line in body.decode().splitlines() if line and line[0] != "#")
        return {"servers": servers, "median_ms": statistics.median(times) * 1000,
                "max_ms": max(times) * 1000, "bytes": size, "samples": samples}
    finally:
        t.stop()
        backend.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=str(REPO / "build"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--servers", type=int, default=1000)
    ap.add_argument("--scrapes", type=int, default=50)
    args = ap.parse_args()
    if not shutil.which("wrk"):
        print("wrk is not installed", file=sys.stderr)
        return 2
    build = Path(args.build)
    print(f"load average at start: {os.getloadavg()}")
    res = throughput(build, args.rounds, args.duration)
    base = statistics.median(r for r, _ in res["off"])
    base_cpu = statistics.median(c for _, c in res["off"])
    print("| configuration | requests/s (median) | vs off | tether CPU us/request (median) "
          "| vs off | rounds (req/s) |")
    print("|---|---:|---:|---:|---:|---|")
    for name, values in res.items():
        med = statistics.median(r for r, _ in values)
        cpu = statistics.median(c for _, c in values)
        print(f"| {name} | {med:,.0f} | {med / base - 1:+.1%} | {cpu:.2f} | "
              f"{cpu / base_cpu - 1:+.1%} | {', '.join(f'{r:,.0f}' for r, _ in values)} |")
    s = scrape_time(build, args.servers, args.scrapes)
    print(f"\nscrape with {s['servers']} servers: median {s['median_ms']:.2f} ms, "
          f"max {s['max_ms']:.2f} ms, {s['bytes']:,} bytes, {s['samples']:,} samples")
    print(f"load average at end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
