"""compare.py's parts, 2 of 5: the servers of a run (Setup): the demo and WebSocket echo
backends, and tether, nginx and HAProxy with equivalent configurations, each on a free port of
127.0.0.1 (in a cgroup of its own under --cpu-budget: start_budgeted).

Imported by compare.py (which re-exports it). Single-threaded, standard library only."""
from __future__ import annotations

import argparse
import grp
import os
import pwd
from dataclasses import dataclass, field
from pathlib import Path

import cpu_budget
from compare_procs import (CGROUPS, FD_MARGIN, Proc, START_TIMEOUT, free_port, wait_for_line,
                           wait_http_ready)

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
