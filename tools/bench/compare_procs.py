"""compare.py's parts, 1 of 5: the benchmarks' constants, the child processes (Proc: each
one started and stopped by its PID, LIVE and CGROUPS), readiness waits, /proc readings (CPU,
RSS, a process tree) and the machine's and tools' facts for a report's header.

Imported by compare.py (which re-exports it) and so by every script that imports compare.
Single-threaded, Python 3.11 standard library only."""
from __future__ import annotations

import http.client
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import time
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
