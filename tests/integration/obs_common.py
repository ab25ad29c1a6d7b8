"""Shared pieces of the observability tests (test_observability_*.py): a tether with three
upstreams (cookie, ip_hash, sid) and its admin address in front of two demo backends, a parser
of the Prometheus text format, traffic generators, and the rule for external tools.

External tools (promtool, prometheus, chromium, node) are real Debian/npm programs. When one is
missing the test is skipped, except under CI (CI=true), where it fails: CI installs them from
tools/packages.txt.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
import unittest

from harness import HOST, Backend, HttpConnection, Tether, WebSocket, free_ports, http_request

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CONF = os.path.join(REPO, "conf")


def require_tool(name: str) -> str:
    """The path of executable `name`; skips the test when it is missing (fails under CI)."""
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} is not installed (Debian package list: tools/packages.txt)"
    if os.environ.get("CI") == "true":
        raise AssertionError(message + " and CI=true: it must be there")
    raise unittest.SkipTest(message)


# ----------------------------------------------------------------------------- exposition format

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\d+)?$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)')


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def parse_labels(text: str) -> dict:
    labels, pos = {}, 0
    while pos < len(text):
        m = _LABEL.match(text, pos)
        if not m:
            raise ValueError(f"bad labels {text!r} at {pos}")
        labels[m.group(1)] = _unescape(m.group(2))
        pos = m.end()
    return labels


class Family:
    def __init__(self, name: str):
        self.name, self.type, self.help, self.samples = name, None, None, []

    def values(self, suffix: str = "", **match) -> list[float]:
        """Values of samples NAME+suffix whose labels include `match`."""
        return [v for n, l, v in self.samples
                if n == self.name + suffix and all(l.get(k) == x for k, x in match.items())]

    def total(self, suffix: str = "", **match) -> float:
        return sum(self.values(suffix, **match))


def parse_metrics(text: str) -> dict[str, Family]:
    """Families by name. A histogram's _bucket/_sum/_count samples go to their family."""
    families: dict[str, Family] = {}
    current = None
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            _, kind, name, rest = (line.split(" ", 3) + [""])[:4]
            fam = families.setdefault(name, Family(name))
            if kind == "TYPE":
                fam.type = rest.strip()
            else:
                fam.help = rest
            current = fam
            continue
        if line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            raise ValueError(f"unparsable sample line {line!r}")
        name = m.group(1)
        fam = current if current and name.startswith(current.name) else None
        if fam is None:
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            fam = families.setdefault(base if base in families else name, Family(name))
        fam.samples.append((name, parse_labels(m.group(3) or ""), float(m.group(4))))
    return families


# ----------------------------------------------------------------------------- tether under test

def obs_config(web_servers, io_servers, ports: dict, workers: int = 2,
               redis_port: int | None = None) -> str:
    """YAML: listener `web` (affinity cookie), `ip` (ip_hash), `io` (sid, with sid.path /sleep so
    that the demo backend's /sleep holds a long-poll, and active health checks), admin on
    ports['admin']."""
    def servers(bs):
        return "\n".join(f"      - {{name: {b.name}, address: {b.address}}}" for b in bs)
    redis = f'redis: {{address: "{HOST}:{redis_port}", key_prefix: "obs:"}}\n' if redis_port else ""
    return f"""workers: {workers}
{redis}
listen:
  - {{address: "{HOST}:{ports['web']}", upstream: web}}
  - {{address: "{HOST}:{ports['ip']}", upstream: ip}}
  - {{address: "{HOST}:{ports['io']}", upstream: io}}
admin:
  address: "{HOST}:{ports['admin']}"
access_log:
  path: "off"
upstreams:
  web:
    affinity: cookie
    balance: round_robin
    cookie: {{secret: "obs-test-secret"}}
    servers:
{servers(web_servers)}
  ip:
    affinity: ip_hash
    servers:
{servers(web_servers)}
  io:
    affinity: sid
    sid: {{path: /sleep, fallback_cookie: false}}
    health_check: {{path: /healthz, interval: 500ms, timeout: 1s}}
    servers:
{servers(io_servers)}
"""


class ObsTether:
    """Two demo backends (s1, s2) and a tether with the obs_config upstreams, stopped by
    close(). web and ip use s1 and s2; io uses s1 only. `backends` (not stopped by close())
    lets replicas share backends; `redis_port` adds a redis block."""

    def __init__(self, workers: int = 2, backends=None, redis_port: int | None = None):
        self.own_backends = backends is None
        self.backends = backends or [Backend("s1"), Backend("s2")]
        names = ("web", "ip", "io", "admin")
        self.ports = dict(zip(names, free_ports(len(names))))
        text = obs_config(self.backends, self.backends[:1], self.ports, workers, redis_port)
        try:
            self.tether = Tether(text, ports=list(self.ports.values()))
        except BaseException:
            if self.own_backends:
                for b in self.backends:
                    b.__exit__(None, None, None)
            raise
        self.ports = dict(zip(names, self.tether.ports))  # moved if one was taken

    def admin(self, path: str, method: str = "GET") -> tuple[int, str]:
        r = http_request(HOST, self.ports["admin"], method, path)
        return r.status, r.body.decode()

    def metrics_text(self) -> str:
        status, body = self.admin("/metrics")
        if status != 200:
            raise AssertionError(f"/metrics answered {status}")
        return body

    def metrics(self) -> dict[str, Family]:
        return parse_metrics(self.metrics_text())

    def status(self) -> dict:
        status, body = self.admin("/status")
        if status != 200:
            raise AssertionError(f"/status answered {status}")
        return json.loads(body)

    def close(self) -> None:
        self.tether.close()
        if self.own_backends:
            for b in self.backends:
                b.__exit__(None, None, None)  # stops it and closes its log file


# ----------------------------------------------------------------------------- traffic

def cookie_of(resp) -> str:
    """The `tether=...` pair of a Set-Cookie answer."""
    for k, v in resp.headers:
        if k.lower() == "set-cookie" and v.startswith("tether="):
            return v.split(";", 1)[0]
    raise AssertionError(f"no tether cookie in {resp.headers}")


class Load:
    """Background traffic until stop(): `threads` keep-alive clients on `port` (GET /), and
    WebSocket echo exchanges on `ws_port` (one tunnel per thread, reopened every 20 messages).
    Counts what was answered, so tests can compare with the counters."""

    def __init__(self, port: int, ws_port: int | None = None, threads: int = 3):
        self.port, self.ws_port = port, ws_port
        self.requests = 0
        self.statuses: dict[int, int] = {}
        self.tunnels = 0
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._http, daemon=True) for _ in range(threads)]
        if ws_port:
            self._threads.append(threading.Thread(target=self._ws, daemon=True))

    def _http(self):
        try:
            with HttpConnection(HOST, self.port) as conn:
                while not self._stop.is_set():
                    r = conn.request("GET", "/")
                    with self._lock:
                        self.requests += 1
                        self.statuses[r.status] = self.statuses.get(r.status, 0) + 1
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.errors.append(f"http: {e!r}")

    def _ws(self):
        try:
            while not self._stop.is_set():
                with WebSocket.connect(HOST, self.ws_port, "/ws") as ws:
                    with self._lock:
                        self.tunnels += 1
                    for i in range(20):
                        ws.send_text(f"m{i}")
                        ws.recv_text()
        except Exception as e:  # noqa: BLE001
            self.errors.append(f"ws: {e!r}")

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)

    def __exit__(self, *exc) -> None:
        self.stop()


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.1, what: str = "condition"):
    """Polls predicate() until it returns a truthy value (returned); TimeoutError after
    `timeout` seconds with the last value in the message."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"{what} not reached in {timeout}s (last: {last!r})")
