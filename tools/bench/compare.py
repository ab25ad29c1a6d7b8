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
import datetime
import grp
import http.client
import json
import os
import platform
import pwd
import re
import resource
import selectors
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import cpu_budget

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
BUILD = REPO / "build"
PROXIES = ("tether", "nginx", "haproxy")
TARGETS = PROXIES + ("direct",)
SCENARIOS = {"a": "HTTP keep-alive", "d": "connection per request", "e": "1 MB responses",
             "b": "WebSocket echo", "c": "idle tunnels", "w": "1 vs 2 workers"}
WRK_CONNS = 64
BIG_CONNS = 16  # e: 16 responses of 1 MiB in flight
BIG_BYTES = 1 << 20
SCALING = (1, 2)  # w: worker counts
WS_CONNS = 64
WS_SIZE = 256
START_TIMEOUT = 15.0  # a process must listen / answer within this
STOP_TIMEOUT = 10.0  # SIGTERM, then SIGKILL after this
IDLE_SETTLE = 1.0  # seconds between `ready` and the RSS reading
PORTS_PER_SOURCE = 20000  # idle: one more 127.0.0.x source address per this many connections
CONNS_PER_BACKEND = 25000  # idle: one more backend (upstream port range) per this many
FD_MARGIN = 64  # descriptors a proxy process needs besides two per tunnel
DEFAULT_PERIOD_US = 10000  # --cpu-budget's CFS period (docs/benchmarks.md, "Proxy-bound mode")
DEFAULT_WEIGHT = 4.0  # --cpu-budget: 4 x a default cgroup's (or a busy session's) share


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ processes
class Proc:
    """A child process we started; stop() signals only its PID."""

    def __init__(self, name: str, argv: list[str], logdir: Path, **kw):
        self.name = name
        self.argv = argv
        self.stdout_path = logdir / f"{name}.stdout"
        self.stderr_path = logdir / f"{name}.stderr"
        out = kw.pop("stdout", None) or open(self.stdout_path, "ab")
        err = open(self.stderr_path, "ab")
        self.p = subprocess.Popen(argv, stdout=out, stderr=err, stdin=kw.pop("stdin", subprocess.DEVNULL), **kw)
        self.cgroup: cpu_budget.Cgroup | None = None  # removed by stop()
        LIVE.append(self)

    @property
    def pid(self) -> int:
        return self.p.pid

    def alive(self) -> bool:
        return self.p.poll() is None

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.alive():
            try:
                os.kill(self.p.pid, sig)
                self.p.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                log(f"{self.name} (pid {self.p.pid}) ignored signal {sig}; SIGKILL")
                self.p.kill()
                self.p.wait(timeout=STOP_TIMEOUT)
            except ProcessLookupError:
                pass
        if self in LIVE:
            LIVE.remove(self)
        if self.cgroup is not None:
            CGROUPS.pop(self.p.pid, None)
            try:
                self.cgroup.remove()
            except cpu_budget.CgroupError as e:
                log(f"{self.name}: {e}")
            self.cgroup = None
        return self.p.returncode


LIVE: list[Proc] = []
CGROUPS: dict[int, cpu_budget.Cgroup] = {}  # --cpu-budget: proxy PID -> its cgroup


def stop_all() -> None:
    for proc in list(reversed(LIVE)):
        proc.stop()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_line(path: Path, pattern: str, proc: Proc, timeout: float) -> re.Match:
    deadline = time.monotonic() + timeout
    rx = re.compile(pattern)
    while time.monotonic() < deadline:
        if path.exists():
            for line in path.read_text(errors="replace").splitlines():
                if m := rx.search(line):
                    return m
        if not proc.alive():
            break
        time.sleep(0.05)
    raise RuntimeError(f"{proc.name} did not print /{pattern}/ (see {path}, {proc.stderr_path})")


def wait_http_ready(port: int, proc: Proc, timeout: float = START_TIMEOUT) -> None:
    """Until GET / through the port answers 200 "hello from ..." (so the backend is reached)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.p.returncode} (see {proc.stderr_path})")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/")
            r = c.getresponse()
            body = r.read()
            c.close()
            if r.status == 200 and body.startswith(b"hello from"):
                return
            last = f"HTTP {r.status} {body[:80]!r}"
        except OSError as e:
            last = str(e)
        time.sleep(0.05)
    raise RuntimeError(f"{proc.name} on port {port} not ready: {last}")


# ------------------------------------------------------------------------------ /proc
def process_tree(pid: int) -> list[int]:
    """pid and its direct children (nginx: master + workers)."""
    pids = [pid]
    kids: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            kids += [int(x) for x in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
    except OSError:
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    stat = Path(f"/proc/{d}/stat").read_text()
                    if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                        kids.append(int(d))
                except (OSError, ValueError, IndexError):
                    pass
    return pids + kids


def rss_bytes(pid: int) -> int:
    total = 0
    for p in process_tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def cpu_seconds(pid: int) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in process_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, ValueError, IndexError):
            pass
    return total / ticks


def machine_info() -> dict[str, str]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        kb = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        mem = f"{kb / 2**20:.1f} GiB"
    except (OSError, IndexError, ValueError):
        pass
    return {"nproc": str(os.cpu_count()), "cpu": model, "kernel": platform.release(), "memory": mem}


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def tool_version(argv: list[str]) -> str:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (r.stdout + r.stderr).strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "?"


def git_commit() -> str:
    try:
        r = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                           capture_output=True, text=True, timeout=10)
        return r.stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


# ------------------------------------------------------------------------------ servers
@dataclass
class Setup:
    args: argparse.Namespace
    tmp: Path
    nofile: int
    backend_port: int = 0
    ports: dict[str, int] = field(default_factory=dict)  # target -> port
    procs: dict[str, Proc] = field(default_factory=dict)  # proxy -> process
    idle_backends: list[int] = field(default_factory=list)  # c: extra backends' ports
    ws_ports: dict[str, int] = field(default_factory=dict)  # b: target -> port (tether-ws-echo)
    ws_procs: dict[str, Proc] = field(default_factory=dict)  # b: proxy -> process
    budgets: cpu_budget.Budgets | None = None  # --cpu-budget: every proxy in its own cgroup
    load_cgroup: cpu_budget.Cgroup | None = None  # --cpu-budget: clients and backends, no quota


def load_argv(s: Setup, argv: list[str]) -> list[str]:
    """A client's or a backend's argv, run in the load cgroup under --cpu-budget."""
    return s.load_cgroup.wrap(argv) if s.load_cgroup is not None else argv


def start_backend(s: Setup, name: str = "backend") -> int:
    proc = Proc(name, load_argv(s, [s.args.backend, "--name", "s1", "--listen", "127.0.0.1:0",
                                    "--threads", "1"]), s.tmp)
    m = wait_for_line(proc.stdout_path, r"listening [\d.]+:(\d+)", proc, START_TIMEOUT)
    return int(m.group(1))


def start_ws_backend(s: Setup, name: str = "ws-backend") -> int:
    """The WebSocket echo scenarios' backend: tools/bench/ws_echo_backend.cpp (epoll, parses
    and re-frames every message), lean so that it does not dominate the CPU per message."""
    proc = Proc(name, load_argv(s, [s.args.ws_backend, "--name", "s1", "--listen", "127.0.0.1:0"]),
                s.tmp)
    m = wait_for_line(proc.stdout_path, r"listening [\d.]+:(\d+)", proc, START_TIMEOUT)
    return int(m.group(1))


def tether_config(s: Setup, port: int, servers: list[int], workers: int) -> str:
    lines = "\n".join(f"      - {{name: s{i + 1}, address: 127.0.0.1:{p}}}" for i, p in enumerate(servers))
    return f"""# written by tools/bench/compare.py
workers: {workers}
listen:
  - address: 127.0.0.1:{port}
    upstream: bench
admin: off
access_log:
  path: off
upstreams:
  bench:
    affinity: none          # as the nginx and HAProxy backends: no stickiness
    balance: round_robin
    drain: {{close_spread: 1s}}
    servers:
{lines}
timeouts:
  shutdown: 5s
"""


def nginx_user() -> str:
    """Run as root, nginx drops its workers to `user`; its default group "nobody" may not exist."""
    if os.geteuid() != 0:
        return ""
    for name in ("www-data", "nobody"):
        try:
            pw = pwd.getpwnam(name)
            return f"user {name} {grp.getgrgid(pw.pw_gid).gr_name};\n"
        except KeyError:
            continue
    return ""


def nginx_config(s: Setup, port: int, d: Path, servers: list[int], workers: int) -> str:
    lines = "\n".join(f"        server 127.0.0.1:{p};" for p in servers)
    return f"""# written by tools/bench/compare.py
{nginx_user()}worker_processes {workers};
worker_rlimit_nofile {min(300000, s.nofile)};
error_log {d}/error.log warn;
events {{
    worker_connections 200000;
}}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 1000000;           # tether does not cap requests per connection

    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      '';                       # plain requests: Connection "" keeps upstream keep-alive
    }}
    map $http_x_request_id $bench_request_id {{
        default $http_x_request_id;
        ''      $request_id;
    }}
    upstream bench {{
{lines}
        # tether's default keepalive 32 keeps a surplus of up to 4 x 32 idle for 1 s; nginx
        # closes every idle connection past its keepalive at once: with 32, a 64-connection
        # load closed and reopened ~0.4 upstream connections per request (system_cost.py)
        keepalive 128;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        location / {{
            proxy_pass http://bench;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            # the headers tether adds by default (headers.forwarded, headers.request_id)
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Request-Id $bench_request_id;
            proxy_read_timeout 3600s;     # tether: timeouts.tunnel 1h
            proxy_send_timeout 3600s;
            proxy_max_temp_file_size 0;   # as tether: large bodies stream, never to disk
        }}
    }}
}}
"""


def haproxy_maxconn(s: Setup) -> int:
    return max(1000, (s.nofile - FD_MARGIN) // 2)


def haproxy_config(s: Setup, port: int, servers: list[int], workers: int) -> str:
    lines = "\n".join(f"    server s{i + 1} 127.0.0.1:{p}" for i, p in enumerate(servers))
    return f"""# written by tools/bench/compare.py
global
    nbthread {workers}
    maxconn {haproxy_maxconn(s)}          # two descriptors a connection: what RLIMIT_NOFILE allows
defaults
    mode http
    option http-keep-alive              # keep-alive on both sides (no http-server-close)
    http-reuse always                   # idle upstream connections shared, as nginx keepalive
    timeout connect 5s
    timeout client 3600s                # tether: timeouts.tunnel 1h
    timeout server 3600s
    timeout tunnel 3600s
    timeout http-keep-alive 3600s
    timeout http-request 60s
frontend bench
    bind 127.0.0.1:{port} backlog 4096
    # the headers tether adds by default (headers.forwarded, headers.request_id)
    option forwardfor
    http-request set-header X-Real-IP %[src]
    http-request set-header X-Forwarded-Proto http
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    http-request set-header X-Request-Id %[uuid] unless {{ req.hdr(x-request-id) -m found }}
    default_backend bench
backend bench
    balance roundrobin
{lines}
"""


def start_budgeted(s: Setup, name: str, argv: list[str], workers: int) -> Proc:
    """argv started as Proc `name`; under --cpu-budget in a cgroup of its own with a quota of
    --cpu-budget x workers CPUs (removed by Proc.stop), which it joins before exec, so that
    the processes it forks (nginx's workers) are in it too."""
    cgroup = None
    if s.budgets is not None:
        cgroup = s.budgets.create(name, s.args.cpu_budget * workers, s.args.cpu_weight)
        argv = cgroup.wrap(argv)
    try:
        proc = Proc(name, argv, s.tmp)
    except OSError:
        if cgroup is not None:
            cgroup.remove()
        raise
    if cgroup is not None:
        proc.cgroup = cgroup
        CGROUPS[proc.pid] = cgroup
    return proc


def start_proxy(s: Setup, name: str, tag: str = "", servers: list[int] | None = None,
                workers: int | None = None) -> tuple[Proc, int]:
    """name is tether, nginx or haproxy; tag makes its process and directory names unique."""
    port = free_port()
    servers = servers or [s.backend_port]
    workers = workers or s.args.workers
    d = s.tmp / f"{name}{tag}"
    d.mkdir(exist_ok=True)
    if name == "tether":
        cfg = d / "tether.yaml"
        cfg.write_text(tether_config(s, port, servers, workers))
        argv = [s.args.tether, "-c", str(cfg)]
    elif name == "nginx":
        cfg = d / "nginx.conf"
        cfg.write_text(nginx_config(s, port, d, servers, workers))
        argv = [s.args.nginx, "-p", str(d), "-c", str(cfg), "-e", str(d / "error.log"), "-g",
                f"daemon off; pid {d}/nginx.pid;"]
    else:
        cfg = d / "haproxy.cfg"
        cfg.write_text(haproxy_config(s, port, servers, workers))
        argv = [s.args.haproxy, "-db", "-f", str(cfg)]
    proc = start_budgeted(s, f"{name}{tag}", argv, workers)
    try:
        wait_http_ready(port, proc)
    except RuntimeError:
        proc.stop()
        raise
    return proc, port


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


# ------------------------------------------------------------------------------ report
# (scenario key, metric key, label, which way is better: "hi", "lo" or None = no ranking)
METRICS = [
    ("a", "rps", "requests/s (higher is better)", "hi"),
    ("a", "p50_ms", "p50 latency ms", "lo"),
    ("a", "p99_ms", "p99 latency ms", "lo"),
    ("a", "cpu_pct", "proxy CPU % of one core", None),
    ("a", "cpu_us_per_op", "proxy CPU us per request (lower is better)", "lo"),
    ("a", "throttled_pct", "periods throttled % (budget: quota ran out)", None),
    ("a", "throttled", "periods throttled (sum of rounds)", None),
    ("a", "errors", "errors (sum of rounds)", None),
    ("d", "rps", "connections (= requests)/s (higher is better)", "hi"),
    ("d", "p50_ms", "p50 latency ms", "lo"),
    ("d", "p99_ms", "p99 latency ms", "lo"),
    ("d", "cpu_pct", "proxy CPU % of one core", None),
    ("d", "cpu_us_per_op", "proxy CPU us per connection (lower is better)", "lo"),
    ("d", "throttled_pct", "periods throttled % (budget: quota ran out)", None),
    ("d", "throttled", "periods throttled (sum of rounds)", None),
    ("d", "errors", "errors (sum of rounds)", None),
    ("e", "mbps", "body MB/s (higher is better)", "hi"),
    ("e", "p99_ms", "p99 latency ms", "lo"),
    ("e", "cpu_pct", "proxy CPU % of one core", None),
    ("e", "cpu_us_per_op", "proxy CPU us per 1 MiB response (lower is better)", "lo"),
    ("e", "throttled_pct", "periods throttled % (budget: quota ran out)", None),
    ("e", "throttled", "periods throttled (sum of rounds)", None),
    ("e", "errors", "errors (sum of rounds)", None),
    ("b", "mps", "messages/s (higher is better)", "hi"),
    ("b", "p50_us", "p50 round trip us", "lo"),
    ("b", "p99_us", "p99 round trip us", "lo"),
    ("b", "cpu_pct", "proxy CPU % of one core", None),
    ("b", "cpu_us_per_op", "proxy CPU us per message (lower is better)", "lo"),
    ("b", "throttled_pct", "periods throttled % (budget: quota ran out)", None),
    ("b", "throttled", "periods throttled (sum of rounds)", None),
    ("b", "errors", "errors (sum of rounds)", None),
    ("c", "rss_before_mib", "RSS with no connection MiB", "lo"),
    ("c", "rss_after_mib", "RSS with the tunnels MiB", "lo"),
    ("c", "bytes_per_tunnel", "bytes per tunnel (lower is better)", "lo"),
    ("c", "opened", "tunnels open", None),
    ("c", "errors", "failed opens + closes (sum of rounds)", None),
]
SUMMED = {"errors", "throttled"}
BLOCK_BEGIN = "<!-- compare.py workers={} begin -->"
BLOCK_END = "<!-- compare.py workers={} end -->"
BUDGET_BEGIN = "<!-- compare.py workers={} budget={} begin -->"
BUDGET_END = "<!-- compare.py workers={} budget={} end -->"


def summarize(values: list[float], metric: str) -> float | None:
    if not values:
        return None
    return sum(values) if metric in SUMMED else statistics.median(values)


def fmt(x: float | None) -> str:
    if x is None or x != x:
        return "—"
    if float(x).is_integer() and abs(x) < 1000:
        return str(int(x))
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def quotient(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or a != a or b != b or b == 0:
        return None
    return a / b


def ratio(a: float | None, b: float | None) -> str:
    q = quotient(a, b)
    return "—" if q is None else f"{q:.2f}"


def best_of(values: list[float | None], better: str | None) -> float | None:
    vals = [v for v in values if v is not None and v == v]
    if not better or not vals:
        return None
    return max(vals) if better == "hi" else min(vals)


def per_round(results: dict, key: str, metric: str, targets) -> tuple[dict, dict]:
    """({target: the metric's value in each round}, {target: their summary}) for one scenario."""
    per = {t: [r[metric] for r in results[key].get(t, []) if metric in r] for t in targets}
    return per, {t: summarize(per[t], metric) for t in targets}


def raw_line(scenario: str, label: str, per: dict, targets) -> str:
    """The per-round values of one metric, target after target, for a report's raw section."""
    return f"- {scenario}, {label}: " + " / ".join(
        ", ".join(fmt(v) for v in per[t]) or "—" for t in targets)


def medians(results: dict, key: str, metric: str) -> dict[str, float | None]:
    per = results.get(key, {})
    return {t: summarize([r[metric] for r in per.get(t, []) if metric in r], metric) for t in per}


def scaling_table(results: dict, budget: float | None = None) -> list[str]:
    """budget (CPUs per worker): a column of periods throttled, and the budget in the title."""
    what = f", a budget of {budget:g} CPU per worker" if budget else ""
    lines = ["", f"Scaling (scenario a against each proxy with 1 and with 2 workers{what}; medians):", "",
             "| proxy | req/s 1 worker | req/s 2 workers | 2 / 1 | p99 ms 1 / 2 | "
             "proxy CPU % 1 / 2 | CPU us per request 1 / 2 |" + (" periods throttled % 1 / 2 |" if budget else ""),
             "|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if budget else "")]
    rps, p99 = medians(results, "w", "rps"), medians(results, "w", "p99_ms")
    cpu, cpr = medians(results, "w", "cpu_pct"), medians(results, "w", "cpu_us_per_op")
    thr = medians(results, "w", "throttled_pct")
    for name in PROXIES:
        one, two = f"{name}-1", f"{name}-2"
        if one not in rps:
            continue
        lines.append(f"| {name} | {fmt(rps[one])} | {fmt(rps[two])} | {ratio(rps[two], rps[one])} | "
                     f"{fmt(p99[one])} / {fmt(p99[two])} | {fmt(cpu[one])} / {fmt(cpu[two])} | "
                     f"{fmt(cpr[one])} / {fmt(cpr[two])} |"
                     + (f" {fmt(thr[one])} / {fmt(thr[two])} |" if budget else ""))
    return lines


def targets_table(s: Setup, results: dict) -> list[str]:
    """Issue 9's targets that this run measures: tether / best of nginx and HAProxy."""
    rows: list[tuple[str, str, str]] = []

    def vs_best(key: str, metric: str, better: str, goal: float, what: str) -> None:
        if key not in results:
            return
        m = medians(results, key, metric)
        best = best_of([m.get("nginx"), m.get("haproxy")], better)
        q = quotient(m.get("tether"), best)
        if q is None:
            return
        met = q >= goal if better == "hi" else q <= goal
        rows.append((what, f"{q:.2f}", "yes" if met else "no"))

    vs_best("a", "rps", "hi", 1.2, "HTTP keep-alive requests/s ≥ 1.2 × best")
    stall = ""
    if s.budgets:  # a request caught by the throttle waits out the rest of the period
        a = s.args
        stall = (f"; under the budget mostly the throttle's wait, period - quota = "
                 f"{(a.cpu_period_us - round(a.cpu_budget * a.workers * a.cpu_period_us)) / 1000:g} ms")
    vs_best("a", "p99_ms", "lo", 1.0, f"HTTP keep-alive p99 no worse than best (≤ 1.0{stall})")
    vs_best("d", "rps", "hi", 1.0, "connection per request ≥ 1.0 × best")
    vs_best("b", "mps", "hi", 1.2, "WebSocket messages/s ≥ 1.2 × best")
    vs_best("c", "bytes_per_tunnel", "lo", 0.5, "bytes per idle tunnel ≤ 0.5 × best")
    if "c" in results:
        opened = medians(results, "c", "opened").get("tether")
        most = (s.nofile - FD_MARGIN) // 2
        why = (f"RLIMIT_NOFILE {s.nofile} allows at most {most:,} a process" if most < 100000
               else f"run with --idle-conns {s.args.idle_conns}")
        rows.append(("100,000 idle tunnels in one process", f"{fmt(opened)} open",
                     "yes" if opened and opened >= 100000 else f"not measured ({why})"))
    if "w" in results:
        r = medians(results, "w", "rps")
        q = quotient(r.get("tether-2"), r.get("tether-1"))
        if q is not None:
            rows.append(("2 workers ≥ 1.8 × one worker", f"{q:.2f}", "yes" if q >= 1.8 else "no"))
    if "a" in results and not s.budgets:  # under a budget direct is not comparable
        m = medians(results, "a", "rps")
        q = quotient(m.get("tether"), m.get("direct"))
        if q is not None:
            rows.append(("keep-alive ≥ 0.70 × direct", f"{q:.2f}", "yes" if q >= 0.7 else "no"))
    if not rows:
        return []
    under = (f" under the same CPU budget, {s.args.cpu_budget:g} CPU per worker for every proxy"
             if s.budgets else "")
    return ["", f"Targets of issue 9 measured here{under} (tether / best of nginx and HAProxy unless "
            "said; `affinity` and Redis overheads: affinity_overhead.py, below):", "",
            "| target | measured | met |", "|---|---:|---|"] + [f"| {a} | {b} | {c} |" for a, b, c in rows]


def budget_text(s: Setup) -> list[str]:
    """--cpu-budget: the report's paragraph on the cgroups (none without a budget)."""
    if s.budgets is None:
        return []
    a = s.args
    period = a.cpu_period_us
    return [f"- **Proxy-bound mode**: each proxy's whole process tree (tether's process, "
            f"nginx's master and workers, HAProxy's process) in a cgroup of its own with a CFS "
            f"bandwidth quota of {a.cpu_budget:g} CPU per worker ({a.workers} worker"
            f"{'s' if a.workers != 1 else ''}: {a.cpu_budget * a.workers:g} CPU, "
            f"{round(a.cpu_budget * a.workers * period)} us every {period} us; w: "
            f"{a.cpu_budget:g} and {2 * a.cpu_budget:g} CPU), by tools/bench/cpu_budget.py "
            f"({s.budgets.describe()}). The clients, the backends and direct run unbudgeted "
            f"(in one cgroup with no quota), so the proxy's CPU, not theirs, bounds requests/s: "
            "the comparison of a load balancer on a machine of its own. Each of these cgroups has "
            f"{a.cpu_weight:g}x the default scheduling weight, so that other work on the machine "
            "takes neither the proxy's budget nor the load's CPU. Proxy CPU % near "
            f"{100 * a.cpu_budget * a.workers:g} and most periods throttled mean the budget held "
            "the proxy (a note below names any run where it did not). Periods throttled: CFS "
            "periods in which the proxy used its whole quota and waited for the next (cpu.stat "
            "nr_throttled over the client run; % of nr_periods, the periods in which it was "
            "runnable). The unbudgeted tables stay the primary ones."]


def budget_notes(s: Setup, results: dict) -> list[str]:
    """--cpu-budget: the runs in which a proxy used less than 90% of its budget (held by the
    client, the backend or other load rather than by its quota), by scenario and proxy."""
    if s.budgets is None:
        return []
    a = s.args
    short = []
    for key in ("a", "d", "e", "b", "w"):
        cpu = medians(results, key, "cpu_pct")
        for t, v in cpu.items():
            workers = int(t.split("-")[1]) if key == "w" else a.workers
            budget = 100 * a.cpu_budget * workers
            if v is not None and v == v and v < 0.9 * budget:
                short.append(f"{SCENARIOS[key]} {t} {v:.0f}% of {budget:g}%")
    if not short:
        return []
    return ["Proxies below 90% of their budget (median CPU; there requests/s was not bounded by "
            "the budget alone): " + "; ".join(short) + "."]


def report(s: Setup, results: dict, info: dict[str, str], started: str) -> str:
    a = s.args
    w = a.workers
    budget = a.cpu_budget if s.budgets else None
    begin, end = ((BUDGET_BEGIN.format(w, f"{budget:g}"), BUDGET_END.format(w, f"{budget:g}"))
                  if budget else (BLOCK_BEGIN.format(w), BLOCK_END.format(w)))
    title = f"## tether vs nginx vs HAProxy vs direct, {w} worker{'s' if w != 1 else ''}"
    if budget:
        title = (f"## Proxy-bound: every proxy held to {budget:g} CPU per worker, "
                 f"{w} worker{'s' if w != 1 else ''}")
    lines = [
        begin,
        title,
        "",
        f"Generated {started} by `{info['command']}` (commit {info['commit']}).",
        "",
        f"- Machine: {info['nproc']} CPUs, {info['cpu']}, {info['memory']} RAM, "
        f"Linux {info['kernel']}; load average {info['load_start']} at start, "
        f"{info['load_end']} at the end (other work on the machine shows up as noise).",
        f"- Versions: {info['tether']}; {info['nginx']}; {info['haproxy']}; {info['wrk']}.",
        f"- One `tether-demo-backend --threads 1` behind every proxy (b: `tether-ws-echo`, "
        f"tools/bench/ws_echo_backend.cpp); tether `workers: {w}`, "
        f"nginx `worker_processes {w}`, HAProxy `nbthread {w}`; everything on 127.0.0.1 of one "
        f"machine (clients, proxies and backend share its CPUs). "
        f"{a.rounds} round{'s' if a.rounds != 1 else ''}, each interleaved tether, nginx, haproxy, "
        f"direct, after a discarded {a.warmup}s warm-up of each; medians shown (error counts are "
        f"summed). RLIMIT_NOFILE {s.nofile}. Proxy CPU is utime + stime from /proc over the client "
        "run (nginx: master + workers). Best = the better of nginx and HAProxy for that metric.",
        f"- a: `wrk -t1 -c{WRK_CONNS} -d{a.duration}s --latency`, `GET /` (16-byte body). "
        f"d: the same with `-H \"Connection: close\"` (every request a new connection). "
        f"e: `wrk -t1 -c{BIG_CONNS}` on `/bytes?n={BIG_BYTES}`, MB/s = responses/s × 1,048,576 / 10^6. "
        f"b: `tether-ws-bench echo`, {WS_CONNS} connections, {WS_SIZE}-byte binary messages, "
        f"closed loop, {a.duration}s. c: `tether-ws-bench idle`, {idle_conns(s)} WebSocket "
        f"tunnels each carrying one message, a fresh proxy per round; RSS of tether's process, "
        f"of nginx's master + workers, of HAProxy's process; bytes per tunnel = "
        f"(after - before) / tunnels open. w: scenario a with 1 and 2 workers of each proxy.",
        "- nginx: upstream keepalive 128 (tether's default 32 keeps up to 4 x 32 idle for 1 s), "
        "proxy_http_version 1.1, Connection \"\" or upgrade, "
        "proxy_buffering on, proxy_max_temp_file_size 0, access_log off, worker_connections 200000, "
        f"worker_rlimit_nofile {min(300000, s.nofile)}, keepalive_requests 1000000, reuseport "
        "backlog=4096, 1h proxy timeouts. HAProxy: mode http, option http-keep-alive (no "
        f"http-server-close), http-reuse always, maxconn {haproxy_maxconn(s)}, timeout "
        "client/server/tunnel/http-keep-alive 1h, no logging. Both set, for parity with tether's "
        "defaults: X-Forwarded-For/-Proto/-Host, X-Real-IP and X-Request-Id. tether: "
        "access_log off, admin off, affinity none, round_robin.",
        *budget_text(s),
        "",
        "| scenario | metric | tether | nginx | HAProxy | direct | tether/nginx | tether/HAProxy "
        "| tether/best | tether/direct |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    raw = ["", "Per-round values (tether / nginx / HAProxy / direct):", ""]
    for key, metric, label, better in METRICS:
        if key not in results:
            continue
        per, med = per_round(results, key, metric, TARGETS)
        if not any(per.values()):
            continue  # e.g. periods throttled without --cpu-budget
        best = best_of([med["nginx"], med["haproxy"]], better)
        lines.append(f"| {SCENARIOS[key]} | {label} | {fmt(med['tether'])} | {fmt(med['nginx'])} | "
                     f"{fmt(med['haproxy'])} | {fmt(med['direct'])} | "
                     f"{ratio(med['tether'], med['nginx'])} | {ratio(med['tether'], med['haproxy'])} | "
                     f"{ratio(med['tether'], best)} | {ratio(med['tether'], med['direct'])} |")
        raw.append(raw_line(SCENARIOS[key], label, per, TARGETS))
    if "w" in results:
        lines += scaling_table(results, budget)
        for t, runs in results["w"].items():
            name, count = t.split("-")
            raw.append(f"- {SCENARIOS['w']}, {name} with {count} worker{'s' if count != '1' else ''}, requests/s: "
                       + ", ".join(fmt(r["rps"]) for r in runs))
    lines += targets_table(s, results)
    notes = info.get("notes", []) + budget_notes(s, results)
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines + raw + ["", end]) + "\n"


def write_out(path: Path, block: str, workers: int) -> None:
    """Replaces this worker count's block in path, keeping the rest; a file written before
    blocks existed loses only its old generated part (everything before its first `## `)."""
    begin, end = BLOCK_BEGIN.format(workers), BLOCK_END.format(workers)
    title = "# tether benchmarks\n\n"
    text = path.read_text() if path.exists() else title
    if begin in text and end in text:
        i, j = text.index(begin), text.index(end) + len(end) + 1
        text = text[:i] + block + text[j:]
    elif "<!-- compare.py workers=" in text:
        blocks = list(re.finditer(r"<!-- compare\.py workers=(\d+) end -->\n?", text))
        after = [m for m in blocks if int(m.group(1)) < workers]
        if after:  # keep blocks in worker order
            i = after[-1].end()
        else:
            i = text.index("<!-- compare.py workers=")
        text = text[:i] + ("\n" if after else "") + block + ("" if after else "\n") + text[i:]
    else:
        rest = text[text.index("\n## "):].lstrip("\n") if "\n## " in text else ""
        text = title + block + ("\n" + rest if rest else "")
    path.write_text(text)


def write_budget_out(path: Path, block: str, workers: int, budget: float) -> None:
    """--cpu-budget: replaces this (workers, budget) block in path, keeping the rest; a new one
    goes after the budget blocks of fewer workers, else before those of more, else after the
    last unbudgeted block and the prose that follows it (before the next `## ` heading)."""
    begin, end = BUDGET_BEGIN.format(workers, f"{budget:g}"), BUDGET_END.format(workers, f"{budget:g}")
    text = path.read_text() if path.exists() else "# tether benchmarks\n"
    if begin in text and end in text:
        i, j = text.index(begin), text.index(end) + len(end) + 1
        path.write_text(text[:i] + block + text[j:])
        return
    ends = list(re.finditer(r"<!-- compare\.py workers=(\d+) budget=\S+ end -->\n?", text))
    begins = list(re.finditer(r"<!-- compare\.py workers=(\d+) budget=\S+ begin -->", text))
    fewer = [m for m in ends if int(m.group(1)) <= workers]
    more = [m for m in begins if int(m.group(1)) > workers]
    if fewer:
        i = fewer[-1].end()
        text = text[:i] + "\n" + block + text[i:]
    elif more:
        i = more[0].start()
        text = text[:i] + block + "\n" + text[i:]
    else:
        plain = list(re.finditer(r"<!-- compare\.py workers=\d+ end -->\n?", text))
        start = plain[-1].end() if plain else 0
        k = text.find("\n## ", start)
        if k < 0:
            text = text.rstrip("\n") + "\n\n" + block
        else:
            text = text[:k + 1] + block + "\n" + text[k + 1:]
    path.write_text(text)


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by every child
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def tool_defaults() -> dict[str, str]:
    """The programs the benchmark scripts run, by option name, and where they are by default."""
    return {"tether": str(BUILD / "tether"),
            "backend": str(BUILD / "tools" / "tether-demo-backend"),
            "ws-bench": str(BUILD / "tools" / "bench" / "tether-ws-bench"),
            "ws-backend": str(BUILD / "tools" / "bench" / "tether-ws-echo"),
            "nginx": shutil.which("nginx") or "/usr/sbin/nginx",
            "haproxy": shutil.which("haproxy") or "/usr/sbin/haproxy",
            "wrk": shutil.which("wrk") or "wrk"}


def add_tool_args(p: argparse.ArgumentParser, *names: str) -> None:
    """--tether, --backend, --ws-bench, --ws-backend, --nginx, --haproxy, --wrk (those named),
    with defaults."""
    defaults = tool_defaults()
    for name in names:
        p.add_argument(f"--{name}", default=defaults[name])


def check_tool_args(p: argparse.ArgumentParser, a: argparse.Namespace, *names: str) -> None:
    """Exits through p.error when one of the named programs is not there."""
    for name in names:
        path = getattr(a, name.replace("-", "_"))
        if not (Path(path).is_file() or shutil.which(path)):
            p.error(f"--{name}: {path} not found (build it first)")


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


def add_budget_args(p: argparse.ArgumentParser) -> None:
    """--cpu-budget, --cpu-period-us, --cpu-weight: the proxy-bound mode's options (compare.py
    and the scripts that reuse its setup); check them with check_budget_args."""
    p.add_argument("--cpu-budget", type=float, metavar="CPUS",
                   help="proxy-bound mode: each proxy in a cgroup with a CFS quota of CPUS per "
                        "worker (0.4 = 40%% of one CPU; 2 workers get 0.8); direct unbudgeted")
    p.add_argument("--cpu-period-us", type=int, default=DEFAULT_PERIOD_US,
                   help="CFS period of --cpu-budget's quota in microseconds (1000..1000000)")
    p.add_argument("--cpu-weight", type=float, default=DEFAULT_WEIGHT,
                   help="--cpu-budget: scheduling weight, x the default, of each proxy's cgroup "
                        "and of one cgroup (no quota) holding the clients and backends, so that "
                        "other work on the machine takes neither the proxies' budget nor the load")


def check_budget_args(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    """Exits through p.error when the options of add_budget_args make no quota."""
    if a.cpu_budget is None:
        return
    if not a.cpu_budget > 0 or not a.cpu_weight > 0:
        p.error("--cpu-budget and --cpu-weight must be > 0")
    if not 1000 <= a.cpu_period_us <= 1000000:
        p.error("--cpu-period-us must be within 1000..1000000")
    if a.cpu_budget * a.cpu_period_us < cpu_budget.MIN_QUOTA_US:
        p.error(f"--cpu-budget {a.cpu_budget:g} x --cpu-period-us {a.cpu_period_us} is below "
                f"the kernel's smallest quota, {cpu_budget.MIN_QUOTA_US} us")


def open_budgets(s: Setup, prog: str) -> None:
    """--cpu-budget: s.budgets and s.load_cgroup (no quota: the clients and backends), or the
    reason on stderr and exit status 2 when the machine has no writable cgroup cpu controller.
    Without --cpu-budget nothing. The caller closes s.budgets (every cgroup) at the end."""
    a = s.args
    if a.cpu_budget is None:
        return
    try:
        s.budgets = cpu_budget.Budgets(a.cpu_period_us)
        s.load_cgroup = s.budgets.create("load", None, a.cpu_weight)
    except cpu_budget.CgroupError as e:
        if s.budgets is not None:
            s.budgets.close()
            s.budgets = None
        print(f"{prog}: --cpu-budget needs a writable cgroup cpu controller: {e}", file=sys.stderr)
        raise SystemExit(2) from e
    log(f"--cpu-budget {a.cpu_budget:g} CPU per worker, period {a.cpu_period_us} us: "
        + s.budgets.describe())


# Log lines that say nothing about the run: start/stop chatter, and nginx's warning that
# worker_connections 200000 exceeds the descriptor limit (the configuration asks for it).
# HAProxy's notices (version, stopping) likewise.
BENIGN = re.compile(r"\[info\]|\[notice\]|worker_connections exceed open file resource limit",
                    re.I)
LOG_PREFIX = re.compile(r"^(\S+Z |\d{4}/\d\d/\d\d \d\d:\d\d:\d\d |nginx: )?(\[\w+\] *)?"
                        r"(\d+#\d+: |\(\d+\) : )?")


def check_logs(s: Setup) -> list[str]:
    """Lines in the proxies' and the backend's stderr / error logs worth a look, by source."""
    seen: dict[str, dict[str, int]] = {}  # process kind -> message -> count
    for f in sorted(s.tmp.rglob("*")):
        if not f.is_file() or not (f.suffix == ".stderr" or f.name == "error.log"):
            continue
        if f.name.startswith("ws-idle-"):
            continue  # logged as it came
        kind = f.relative_to(s.tmp).parts[0].split("-")[0].split(".")[0]
        for line in f.read_text(errors="replace").splitlines():
            if line.strip() and not BENIGN.search(line):
                msg = LOG_PREFIX.sub("", line.strip(), count=1)
                msg = re.sub(r"^\*\d+ ", "", msg).split(", client: ")[0]  # nginx connection id
                seen.setdefault(kind, {}).setdefault(msg, 0)
                seen[kind][msg] += 1
    notes = []
    for kind, msgs in seen.items():
        shown = "; ".join(f"{n} x `{m}`" for m, n in list(msgs.items())[:5])
        more = f" (and {len(msgs) - 5} other messages)" if len(msgs) > 5 else ""
        notes.append(f"{kind} logged: {shown}{more}")
    return notes


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


# ------------------------------------------------------------------------------ a run's frame
# Shared by compare.py and tls_compare.py (and the other scripts where they fit).
def now_text() -> str:
    return datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")


def run_info(script: str, a: argparse.Namespace) -> dict:
    """The machine, the command line, the commit, the load and the versions of tether, nginx
    and wrk, for a report's header (load_end is added by finish())."""
    return machine_info() | {
        "command": f"python3 tools/bench/{script} " + " ".join(shlex.quote(x) for x in sys.argv[1:]),
        "commit": git_commit(), "load_start": load_average(),
        "tether": tool_version([a.tether, "--version"]), "nginx": tool_version([a.nginx, "-v"]),
        "wrk": tool_version([a.wrk, "-v"]).split(" [")[0]}


def exited_notes(s: Setup, names) -> list[str]:
    """A note for each of the named proxies that is no longer running."""
    return [f"{name} exited during the run with code {s.procs[name].p.returncode}"
            for name in names if not s.procs[name].alive()]


def finish(s: Setup, info: dict, notes: list[str], make_report, write) -> None:
    """After the processes are stopped: notes from their logs, the report printed (and written
    to --out with write(path, text, workers)), the temporary directory removed unless --keep."""
    a = s.args
    notes += check_logs(s)
    info["load_end"] = load_average()
    info["notes"] = notes
    text = make_report()
    print(text)
    if a.out:
        write(Path(a.out), text, a.workers)
        log(f"wrote {a.out}")
    if a.keep:
        log(f"kept {s.tmp}")
    else:
        shutil.rmtree(s.tmp, ignore_errors=True)


def run_main(main) -> None:
    """Runs main() as the script's body: every process it started is stopped however it ends."""
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        stop_all()
        sys.exit(130)
    except BaseException:
        stop_all()
        raise


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
