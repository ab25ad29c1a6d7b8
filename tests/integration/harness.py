"""Integration-test harness for tether (Python 3.11, stdlib only).

Used by the test_*.py files in this folder, which ctest runs as
`python3 -m unittest -v test_xxx` with cwd tests/integration and the environment variables
TETHER_BIN and DEMO_BACKEND_BIN naming the built binaries.

What it gives:
  * processes: Backend (tether-demo-backend) and Tether (the proxy, from a YAML text), each
    started on 127.0.0.1, stopped by PID only (SIGTERM, then SIGKILL after a bound); anything
    still running at interpreter exit is killed, and only processes started here.
  * tether_config(): a minimal valid tether YAML with overridable blocks.
  * raw HTTP/1.1 over sockets: HttpConnection (keep-alive, pipelining, streamed bodies),
    http_request() for one exchange, send_raw() for hand-made bytes.
  * WebSocket: a minimal RFC 6455 client (client role, masked frames).

Every blocking call is bounded: `timeout` arguments are seconds, DEFAULT_TIMEOUT otherwise
(START_TIMEOUT for a started process to become ready). A wait that runs out raises TimeoutError
(subprocess.TimeoutExpired for process waits).
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import json
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterable

DEFAULT_TIMEOUT = 10.0
# The bound on a process started here becoming ready (listening, or its first line written).
# The waits poll and end as soon as it is, so a generous bound costs nothing when all is well:
# it only keeps a start slowed by the machine from failing the test. A sanitizer tether takes
# ~0.25 s of CPU to start (0.8-1.8 s at load 5); with the test's share of the CPU cut to a few
# percent (two sanitizer suites, builds and tests of others on 2 cores) that passed 10 s.
# A process that exits or fails meanwhile still fails the start at once.
START_TIMEOUT = 60.0
HOST = "127.0.0.1"
# The demo backend's /bytes pattern: byte i of a body is PATTERN_ALPHABET[i % 64].
PATTERN_ALPHABET = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_"


def _binary(env_name: str) -> str:
    path = os.environ.get(env_name)
    if not path:
        raise RuntimeError(f"{env_name} is not set (ctest sets it to the built binary)")
    return path


def pattern_bytes(n: int) -> bytes:
    """The first n bytes of the demo backend's /bytes body."""
    reps = n // len(PATTERN_ALPHABET) + 1
    return (PATTERN_ALPHABET * reps)[:n]


# ----------------------------------------------------------------------------- processes

_live: set[subprocess.Popen] = set()


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_live):
        if proc.poll() is None:
            proc.kill()  # by PID: Popen never signals a reaped process
            try:
                proc.wait(3)
            except subprocess.TimeoutExpired:
                pass
    _live.clear()


def _stop_process(proc: subprocess.Popen, grace: float) -> int | None:
    """SIGTERM, then SIGKILL after `grace` seconds; returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    _live.discard(proc)
    return proc.returncode


# The first line of a sanitizer report in a process's stderr: UBSan's "FILE:LINE:COL: runtime
# error: ..." (in an ASan build UBSan writes to stderr whatever log_path says), and ASan, LSan
# and TSan reports when no log_path sends them to files.
_SANITIZER_LINE = re.compile(
    r"^.*(?:: runtime error: |ERROR: (?:Address|Leak)Sanitizer|WARNING: ThreadSanitizer)",
    re.MULTILINE)


def sanitizer_report(pid: int, stderr: str = "") -> str:
    """What a sanitizer reported in process `pid`, else "": the report files of ASan (with
    LSan) and TSan when ASAN_OPTIONS / TSAN_OPTIONS send reports to files (`log_path=PREFIX`:
    tools/dev.sh test --asan / --tsan do), and the report in its `stderr` text, if any. A TSan
    report does not stop the process and an ASan or UBSan one may end it when no check of the
    test looks, so without this an error in a tether a test started could go unnoticed."""
    found = []
    for var in ("ASAN_OPTIONS", "TSAN_OPTIONS"):
        match = re.search(r"(?:^|[\s:,])log_path=([^\s:,]+)", os.environ.get(var, ""))
        if not match:
            continue
        try:
            with open(f"{match.group(1)}.{pid}", "rb") as f:
                found.append(f.read().decode(errors="replace"))
        except FileNotFoundError:
            pass
    if match := _SANITIZER_LINE.search(stderr):
        found.append(stderr[match.start():])
    return "\n".join(found)


def _check_sanitizer(pid: int, what: str, stderr: str = "") -> None:
    """Raises AssertionError (failing the test that stops the process) with the report of
    sanitizer_report(pid, stderr), if there is one."""
    report = sanitizer_report(pid, stderr)
    if report:
        raise AssertionError(f"{what} (pid {pid}): a sanitizer reported:\n{report[:20000]}")


def replace_file(path: str, text: str) -> None:
    """Writes `text` to `path` the way a config should be rewritten under a running tether:
    into a new file beside it, then rename(2) over it. A reload (a SIGHUP handled late, when
    the test already writes the next config) reads the old file or the new one, never the
    empty or partial one that open(path, "w") shows between its truncation and the write."""
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bound to 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def free_ports(n: int) -> list[int]:
    """n distinct free ports: each socket stays bound until all are chosen, so two
    calls in a row cannot hand out the same port (free_port() twice can)."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in socks:
            s.bind((HOST, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


# A port chosen by free_port(s) is released before the child binds it; meanwhile another
# process can take it (a connection's source port, from the same ephemeral range, on a busy
# machine): the child then fails to bind with this in its output.
_ADDRESS_IN_USE = re.compile(r"EADDRINUSE|[Aa]ddress already in use")
PORT_TRIES = 3


class PortTaken(RuntimeError):
    """A process started here exited because a port chosen for it was taken before it bound
    it (its output said address in use); on_free_ports() starts it again on other ports."""


def raise_if_port_taken(output: str, message: str) -> None:
    """Raises PortTaken(message) when a process's `output` says a bind found its address in use."""
    if _ADDRESS_IN_USE.search(output):
        raise PortTaken(message)


def on_free_ports(start, ports: int | list[int], tries: int = PORT_TRIES, choose=None):
    """start(ports) and its result; `ports` is a list, or how many to choose. While start
    raises PortTaken, start(as many new ports) again, `tries` calls in all (then the last
    PortTaken propagates). choose(n) gives n ports (default free_ports). start must stop what
    it started before raising."""
    choose = choose or free_ports
    chosen = choose(ports) if isinstance(ports, int) else list(ports)
    tried = set(chosen)
    for attempt in range(tries):
        try:
            return start(chosen)
        except PortTaken:
            if attempt + 1 == tries:
                raise
            for _ in range(10):  # none tried before: a config text may still hold those
                chosen = choose(len(chosen))
                if tried.isdisjoint(chosen):
                    break
            tried.update(chosen)


def wait_port(port: int, timeout: float = START_TIMEOUT, host: str = HOST,
              proc: subprocess.Popen | None = None, output=lambda: "") -> None:
    """Waits until host:port accepts a TCP connection (which it then closes). With `proc`
    (the process that is to listen there): when it exits first, raises PortTaken or else
    RuntimeError, with the end of its output()."""
    deadline = time.monotonic() + timeout
    what = proc.args[0] if proc else "process"
    while True:
        if proc is not None and proc.poll() is not None:
            text = output()
            message = f"{what} exited with {proc.returncode} before accepting:\n{text[-2000:]}"
            raise_if_port_taken(text, message)
            raise RuntimeError(message)
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing accepts on {host}:{port} after {timeout}s"
                                   + (f"; {what}'s output:\n{output()[-2000:]}" if proc else ""))
            time.sleep(0.02)


def _listening_inodes(port: int) -> set[str]:
    """Socket inodes in LISTEN state on `port` (any address), from /proc/net/tcp{,6}."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(fields[9])
        except OSError:
            pass
    return inodes


def _process_listens(pid: int, port: int) -> bool:
    """True when process `pid` holds a listening socket on `port`; no connection is made,
    so readiness checks do not show up in the proxy's connection counters."""
    inodes = _listening_inodes(port)
    if not inodes:
        return False
    fd_dir = f"/proc/{pid}/fd"
    try:
        for fd in os.listdir(fd_dir):
            try:
                link = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if link.startswith("socket:[") and link[8:-1] in inodes:
                return True
    except OSError:
        pass
    return False


def read_stdout_line(proc: subprocess.Popen, timeout: float, what: str,
                     logs=lambda: "") -> str:
    """The first line `proc` writes to its piped stdout, within `timeout` seconds. Raises
    TimeoutError when none comes, RuntimeError (with `logs()`) when the process exits first."""
    fd, data = proc.stdout.fileno(), b""
    deadline = time.monotonic() + timeout
    while not data.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"{what}: no line on stdout in {timeout}s")
        if select.select([fd], [], [], remaining)[0]:
            chunk = os.read(fd, 1)  # never past the line: later output stays in the pipe
            if not chunk:
                raise RuntimeError(f"{what} exited ({proc.poll()}): {logs()}")
            data += chunk
    return data.decode().strip()


class LoggedProcess:
    """A helper program a test starts (prometheus, chromium, node, ...): its output goes to
    NAME.log in a temporary directory of its own (stderr only when stdout is piped), it is
    registered for the exit-time cleanup, and close() stops it by PID (SIGTERM, then SIGKILL
    after `grace`) and removes the directory."""

    def __init__(self, argv: list[str], name: str, cwd: str | None = None,
                 pipe_stdout: bool = False, directory: str | None = None):
        self.name = name
        self.dir = directory or tempfile.mkdtemp(prefix=f"tether-{name}-")
        self.log_path = os.path.join(self.dir, f"{name}.log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            argv, cwd=cwd or self.dir, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if pipe_stdout else self.log,
            stderr=self.log if pipe_stdout else subprocess.STDOUT)
        _live.add(self.proc)

    def read_line(self, timeout: float) -> str:
        """The next line on stdout (pipe_stdout=True)."""
        return read_stdout_line(self.proc, timeout, self.name, self.logs)

    def logs(self, limit: int = 3000) -> str:
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")[-limit:]

    def close(self, grace: float = 10.0) -> None:
        _stop_process(self.proc, grace)
        if self.proc.stdout:
            self.proc.stdout.close()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Backend:
    """A tether-demo-backend on 127.0.0.1, port chosen by the kernel (or `port`)."""

    def __init__(self, name: str, threads: int = 1, port: int = 0,
                 timeout: float = START_TIMEOUT):
        self.name = name
        self._tmp = tempfile.TemporaryFile()
        args = [_binary("DEMO_BACKEND_BIN"), "--name", name, "--listen", f"{HOST}:{port}",
                "--threads", str(threads)]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self._tmp,
                                     stdin=subprocess.DEVNULL)
        _live.add(self.proc)
        try:
            line = self._read_line(timeout)
        except BaseException:
            self.kill()
            raise
        match = re.fullmatch(r"listening (\S+):(\d+)", line)
        if not match:
            self.kill()
            raise RuntimeError(f"backend {name}: unexpected first line {line!r}")
        self.port = int(match.group(2))

    def _read_line(self, timeout: float) -> str:
        return read_stdout_line(self.proc, timeout, f"backend {self.name}", self.logs)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def stats(self, timeout: float = DEFAULT_TIMEOUT) -> dict:
        """GET /stats straight from the backend (counts as one connection and request)."""
        return json.loads(http_request(HOST, self.port, "GET", "/stats", timeout=timeout).body)

    def logs(self) -> str:
        self._tmp.seek(0)
        return self._tmp.read().decode(errors="replace")

    def stop(self, grace: float = 3.0) -> int | None:
        """SIGTERM, SIGKILL after `grace` seconds; returns the exit code. Raises
        AssertionError if a sanitizer reported in it (see sanitizer_report)."""
        code = _stop_process(self.proc, grace)
        self.proc.stdout.close()
        _check_sanitizer(self.proc.pid, f"backend {self.name}",
                         "" if self._tmp.closed else self.logs())
        return code

    def kill(self) -> int | None:
        """SIGKILL (a crashed backend); returns the exit code."""
        if self.proc.poll() is None:
            self.proc.kill()
        return self.stop()

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.stop()
        finally:
            self._tmp.close()


def _listen_ports(config_text: str) -> list[int]:
    """Ports of the `address:` entries of the top-level `listen:` block (block style)."""
    ports, inside = [], False
    for line in config_text.splitlines():
        if re.match(r"^\S", line):
            inside = line.startswith("listen:")
        elif inside:
            m = re.match(r"^\s*-?\s*address:\s*[\"']?\S*:(\d+)", line)
            if m:
                ports.append(int(m.group(1)))
    return ports


def _with_ports(config_text: str, moved: dict[int, int]) -> str:
    """config_text with each address HOST:OLD of `moved` written HOST:NEW."""
    def swap(m: re.Match) -> str:
        port = int(m.group(1))
        return f"{HOST}:{moved.get(port, port)}"
    return re.sub(rf"(?<![\w.]){re.escape(HOST)}:(\d+)(?!\d)", swap, config_text)


class Tether:
    """The tether binary run on a YAML text written to a fresh temp dir.

    stdout (the access log with `path: stdout`) and stderr (logs) go to files in that dir.
    The constructor returns once every port of `ports` (default: the `listen:` addresses of
    the config) is listened on by this process; a process that exits first raises with its
    logs. close() (or leaving the `with` block) stops it and removes the dir. preexec_fn runs
    in the child before exec (e.g. a low RLIMIT_NOFILE).

    The ports were chosen free (free_port) and released: one can be taken before tether binds
    it. When tether then exits with "address in use", it is started again with the addresses
    HOST:PORT of `ports` in the config moved to new free ports (on_free_ports, PORT_TRIES
    starts in all). So connect to the ports of .ports / .port (in the order given), not to the
    numbers put in the config; .moved maps each changed port to its new one, and reload()
    moves them in a new config text too.
    """

    def __init__(self, config_text: str, ports: Iterable[int] | None = None,
                 timeout: float = START_TIMEOUT, args: Iterable[str] = (),
                 env: dict | None = None, preexec_fn=None, tries: int = PORT_TRIES):
        self.dir = tempfile.mkdtemp(prefix="tether-it-")
        self.config_path = os.path.join(self.dir, "tether.yaml")
        asked = list(ports) if ports is not None else _listen_ports(config_text)
        self.moved: dict[int, int] = {}
        self.proc = None
        cmd = [_binary("TETHER_BIN"), *args, "-c", self.config_path]
        env = {**os.environ, **(env or {})}

        def start(chosen: list[int]) -> None:
            self.moved = {a: b for a, b in zip(asked, chosen) if a != b}
            text = self.write_config(config_text)
            self.ports = chosen
            self.port = chosen[0] if chosen else None
            if self.proc is not None:  # the files of the start before
                self._out.close()
                self._err.close()
            self._out = open(os.path.join(self.dir, "stdout.log"), "wb")
            self._err = open(os.path.join(self.dir, "stderr.log"), "wb")
            self.proc = subprocess.Popen(cmd, stdout=self._out, stderr=self._err,
                                         stdin=subprocess.DEVNULL, preexec_fn=preexec_fn,
                                         env=env)
            _live.add(self.proc)
            try:
                self._wait_ready(timeout)
            except PortTaken:
                missing = [p for p in chosen if f"{HOST}:{p}" not in text]
                self.stop()  # and go on with the next start, unless no port can be moved
                _check_sanitizer(self.proc.pid, "tether", self.logs())
                if missing:
                    raise RuntimeError(f"tether: a port was taken, and {missing} are not "
                                       f"written {HOST}:PORT in its config: {self.logs()}")
                raise

        try:
            on_free_ports(start, asked, tries)
        except BaseException:
            if self.proc is not None:
                self.close()  # the error carries the logs
            else:
                shutil.rmtree(self.dir, ignore_errors=True)
            raise

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = set(self.ports)
        while pending:
            if self.proc.poll() is not None:
                message = f"tether exited with {self.proc.returncode}: {self.logs()}"
                raise_if_port_taken(self.logs(), message)
                raise RuntimeError(message)
            pending = {p for p in pending if not _process_listens(self.proc.pid, p)}
            if pending and time.monotonic() > deadline:
                raise TimeoutError(f"tether not listening on {sorted(pending)} after "
                                   f"{timeout}s: {self.logs()}")
            if pending:
                time.sleep(0.02)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def write_config(self, config_text: str) -> str:
        """Writes the config file, with the ports of .moved moved; returns that text."""
        config_text = _with_ports(config_text, self.moved)
        replace_file(self.config_path, config_text)
        return config_text

    def reload(self, config_text: str) -> None:
        """Rewrites the config file (write_config: the ports of .moved moved, so a text made
        with the ports first chosen still fits) and sends SIGHUP."""
        self.write_config(config_text)
        self.signal(signal.SIGHUP)

    def rss_kb(self) -> int:
        """Resident set size (VmRSS) in KiB."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float = DEFAULT_TIMEOUT) -> int:
        """Exit code; raises subprocess.TimeoutExpired if still running after `timeout`."""
        code = self.proc.wait(timeout)
        _live.discard(self.proc)
        return code

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace: float = DEFAULT_TIMEOUT) -> int | None:
        """SIGTERM, SIGKILL after `grace` seconds; returns the exit code."""
        code = _stop_process(self.proc, grace)
        self._out.flush()
        self._err.flush()
        return code

    def kill(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.kill()
        return self.stop()

    def _read(self, name: str) -> str:
        with open(os.path.join(self.dir, name), "rb") as f:
            return f.read().decode(errors="replace")

    def logs(self) -> str:
        """Everything tether wrote to stderr so far."""
        return self._read("stderr.log")

    def access_log(self) -> str:
        """Everything tether wrote to stdout so far (the access log with `path: stdout`)."""
        return self._read("stdout.log")

    def close(self) -> None:
        """Stops it and removes its dir; then raises AssertionError if a sanitizer reported
        in it (see sanitizer_report)."""
        self.stop()
        self._out.close()
        self._err.close()
        try:
            stderr = self.logs()
        except FileNotFoundError:  # closed before
            stderr = ""
        shutil.rmtree(self.dir, ignore_errors=True)
        _check_sanitizer(self.proc.pid, "tether", stderr)

    def __enter__(self) -> Tether:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def tether_check(config_text: str, timeout: float = DEFAULT_TIMEOUT) -> tuple[int, str, str]:
    """Runs `tether -t -c FILE`; returns (exit code, stdout, stderr). The file path is
    TMPDIR/tether.yaml (error messages name it)."""
    with tempfile.TemporaryDirectory(prefix="tether-check-") as d:
        path = os.path.join(d, "tether.yaml")
        with open(path, "w") as f:
            f.write(config_text)
        done = subprocess.run([_binary("TETHER_BIN"), "-t", "-c", path], capture_output=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
        return done.returncode, done.stdout.decode(errors="replace"), \
            done.stderr.decode(errors="replace")


# ----------------------------------------------------------------------------- config

# (a trailing ":" would make YAML read a mapping: such text is quoted)
_SAFE_SCALAR = re.compile(r"[A-Za-z0-9_./@+][A-Za-z0-9_./:@+\-]*(?<!:)")


class _Raw:
    """A YAML snippet placed verbatim (re-indented) as a block."""

    def __init__(self, text: str):
        self.text = textwrap.dedent(text).strip("\n")

    def top_keys(self) -> set[str]:
        return set(re.findall(r"^([A-Za-z_][\w-]*)\s*:", self.text, re.M))


def _scalar(value) -> str:
    if value is True or value is False:
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return str(value)
    text = str(value)
    return text if _SAFE_SCALAR.fullmatch(text) else json.dumps(text)


def _emit(value, indent: int) -> list[str]:
    """Block lines for a dict or list value, `indent` spaces deep."""
    pad = " " * indent
    if isinstance(value, _Raw):
        return [pad + line if line else line for line in value.text.splitlines()]
    if isinstance(value, list):
        lines = []
        for item in value:
            if isinstance(item, (dict, list, _Raw)):
                sub = _emit(item, indent + 2)
                lines.append(pad + "- " + sub[0][indent + 2:])
                lines.extend(sub[1:])
            else:
                lines.append(pad + "- " + _scalar(item))
        return lines
    lines = []
    for key, val in value.items():
        if isinstance(val, _Raw) and key.startswith("__raw"):
            lines.extend(_emit(val, indent))
        elif isinstance(val, _Raw) or (isinstance(val, dict) and val):
            lines.append(f"{pad}{key}:")
            lines.extend(_emit(val, indent + 2))
        elif isinstance(val, list) and any(isinstance(v, (dict, list, _Raw)) for v in val):
            lines.append(f"{pad}{key}:")
            lines.extend(_emit(val, indent + 2))
        elif isinstance(val, list):
            lines.append(f"{pad}{key}: [{', '.join(_scalar(v) for v in val)}]")
        elif isinstance(val, dict):
            lines.append(f"{pad}{key}: {{}}")
        else:
            lines.append(f"{pad}{key}: {_scalar(val)}")
    return lines


def _as_block(value):
    """An override value: a multi-key YAML text becomes a _Raw block, the rest stays."""
    if isinstance(value, str) and ("\n" in value or re.search(r":(\s|$)", value)):
        return _Raw(value)
    return value


def _merge(base: dict, override) -> dict:
    """`base` with `override` (a dict, or a YAML snippet whose top keys replace base's)."""
    override = _as_block(override)
    if isinstance(override, _Raw):
        merged = {k: v for k, v in base.items() if k not in override.top_keys()}
        merged["__raw"] = override
        return merged
    return {**base, **(override or {})}


def tether_config(upstream_servers, listen_port: int, **overrides) -> str:
    """A minimal valid tether YAML: one listener on 127.0.0.1:listen_port -> upstream `u`.

    upstream_servers: [(name, port), ...]; a port may also be "host:port", and a third item
    (dict or YAML snippet) adds server keys, e.g. ("b1", 3001, {"weight": 2}).
    overrides, each a python value (dict/list/scalar) or a YAML snippet string; None drops
    a key:
      upstream=...   keys merged into upstream u (affinity, balance, health_check, ...)
      listen=...     keys merged into the listen entry (proxy_protocol, tls)
      extra="..."    raw YAML appended at the end (more upstreams, ...)
      any other      a top-level key: workers, admin, redis, timeouts, limits, headers,
                     access_log, trusted_proxies; e.g. timeouts="idle: 2s\\nconnect: 1s" or
                     limits={"max_header_size": "4k"}.
    """
    servers = []
    for entry in upstream_servers:
        name, port = entry[0], entry[1]
        address = port if isinstance(port, str) and ":" in port else f"{HOST}:{port}"
        server = {"name": name, "address": address}
        servers.append(_merge(server, entry[2]) if len(entry) > 2 else server)
    upstream = _merge({"balance": "round_robin", "servers": servers},
                      overrides.pop("upstream", None))
    listen = _merge({"address": f"{HOST}:{listen_port}", "upstream": "u"},
                    overrides.pop("listen", None))
    extra = overrides.pop("extra", None)
    config = {"workers": 1, "admin": "off", "listen": [listen], "upstreams": {"u": upstream},
              "access_log": {"path": "stdout"}}
    for key, value in overrides.items():
        config[key] = _as_block(value)
    config = {k: v for k, v in config.items() if v is not None}
    text = "\n".join(_emit(config, 0)) + "\n"
    if extra:
        text += textwrap.dedent(extra).strip("\n") + "\n"
    return text


# ----------------------------------------------------------------------------- raw HTTP

class ConnectionClosed(ConnectionError):
    """The peer closed the connection (FIN) where a message was expected."""


class _Reader:
    """Buffered reads from a socket, each bounded by a deadline (time.monotonic())."""

    def __init__(self, sock: socket.socket, initial: bytes = b""):
        self.sock = sock
        self.buf = bytearray(initial)

    def fill(self, deadline: float) -> bool:
        """Reads more into buf; False on EOF."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("read timed out")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(1 << 18)
        except socket.timeout:
            raise TimeoutError("read timed out") from None
        self.buf += data
        return bool(data)

    def read_until(self, delim: bytes, deadline: float, limit: int = 1 << 20) -> bytes:
        start = 0
        while True:
            pos = self.buf.find(delim, start)
            if pos >= 0:
                out = bytes(self.buf[:pos + len(delim)])
                del self.buf[:pos + len(delim)]
                return out
            if len(self.buf) > limit:
                raise ValueError(f"no {delim!r} within {limit} bytes")
            start = max(0, len(self.buf) - len(delim) + 1)
            if not self.fill(deadline):
                raise ConnectionClosed(f"EOF before {delim!r} ({len(self.buf)} bytes pending)")

    def read_exact(self, n: int, deadline: float) -> bytes:
        while len(self.buf) < n:
            if not self.fill(deadline):
                raise ConnectionClosed(f"EOF after {len(self.buf)} of {n} bytes")
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_to_eof(self, deadline: float) -> bytes:
        while self.fill(deadline):
            pass
        out = bytes(self.buf)
        self.buf.clear()
        return out


class Response:
    """A parsed HTTP response. headers keep received order and case."""

    def __init__(self, version: str, status: int, reason: str, headers: list[tuple[str, str]],
                 body: bytes, framing: str, interim: list[Response]):
        self.version, self.status, self.reason = version, status, reason
        self.headers, self.body = headers, body
        self.framing = framing  # "length" | "chunked" | "close" | "none"
        self.interim = interim  # 1xx responses received before this one (100 Continue)

    def header(self, name: str, default: str | None = None) -> str | None:
        """First value of header `name` (case-insensitive)."""
        values = self.header_all(name)
        return values[0] if values else default

    def header_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")

    def json(self):
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.framing} {len(self.body)}B>"


def _read_head(reader: _Reader, deadline: float) -> tuple[str, int, str, list]:
    head = reader.read_until(b"\r\n\r\n", deadline).decode("latin-1")
    status_line, *lines = head[:-4].split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise ValueError(f"bad status line {status_line!r}")
    headers = []
    for line in lines:
        name, _, value = line.partition(":")
        headers.append((name, value.strip()))
    return parts[0], int(parts[1]), parts[2] if len(parts) > 2 else "", headers


def _read_chunked(reader: _Reader, deadline: float) -> bytes:
    body = bytearray()
    while True:
        size_line = reader.read_until(b"\r\n", deadline).split(b";")[0].strip()
        size = int(size_line, 16)
        if size == 0:
            while reader.read_until(b"\r\n", deadline) != b"\r\n":  # trailers
                pass
            return bytes(body)
        body += reader.read_exact(size, deadline)
        if reader.read_exact(2, deadline) != b"\r\n":
            raise ValueError("chunk not followed by CRLF")


def read_response(reader: _Reader, method: str = "GET",
                  timeout: float = DEFAULT_TIMEOUT) -> Response:
    """Reads one response (after any 1xx but 101) to a request made with `method`."""
    deadline = time.monotonic() + timeout
    interim = []
    while True:
        version, status, reason, headers = _read_head(reader, deadline)
        if status == 101 or not 100 <= status < 200:
            break
        interim.append(Response(version, status, reason, headers, b"", "none", []))
    resp = Response(version, status, reason, headers, b"", "none", interim)
    te = resp.header("Transfer-Encoding", "")
    if method == "HEAD" or status in (101, 204, 304):
        pass
    elif "chunked" in te.lower():
        resp.body, resp.framing = _read_chunked(reader, deadline), "chunked"
    elif resp.header("Content-Length") is not None:
        n = int(resp.header("Content-Length"))
        resp.body, resp.framing = reader.read_exact(n, deadline), "length"
    else:
        resp.body, resp.framing = reader.read_to_eof(deadline), "close"
    return resp


def _header_items(headers) -> list[tuple[str, str]]:
    if headers is None:
        return []
    return list(headers.items()) if isinstance(headers, dict) else list(headers)


def build_request(method: str, path: str, headers=None, body: bytes | None = None,
                  host: str = HOST, chunked: bool = False) -> bytes:
    """Request head (+ body when bytes). Adds Host unless given, and Content-Length for a
    bytes body, or Transfer-Encoding: chunked when `chunked` (the body then goes apart)."""
    items = _header_items(headers)
    names = {k.lower() for k, _ in items}
    if "host" not in names:
        items.insert(0, ("Host", host))
    if chunked and "transfer-encoding" not in names:
        items.append(("Transfer-Encoding", "chunked"))
    elif body is not None and "content-length" not in names and "transfer-encoding" not in names:
        items.append(("Content-Length", str(len(body))))
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in items)
    return head.encode("latin-1") + b"\r\n" + (body if body is not None and not chunked else b"")


def encode_chunks(pieces: Iterable[bytes]) -> Iterable[bytes]:
    """Chunked transfer coding of `pieces`, ending with the last chunk."""
    for piece in pieces:
        if piece:
            yield b"%x\r\n" % len(piece) + piece + b"\r\n"
    yield b"0\r\n\r\n"


class HttpConnection:
    """One keep-alive client connection. Requests may be pipelined: send_request() several
    times, then read_response() once per request, in order."""

    def __init__(self, host: str = HOST, port: int = 80, timeout: float = DEFAULT_TIMEOUT):
        self.host, self.port, self.timeout = host, port, timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = _Reader(self.sock)
        self._methods: list[str] = []
        self._senders: list[tuple[threading.Thread, list]] = []

    def send(self, data: bytes) -> None:
        """Raw bytes (not tracked as a request)."""
        self.sock.settimeout(self.timeout)
        self.sock.sendall(data)

    def send_request(self, method: str, path: str, headers=None, body=None) -> None:
        """Sends a request. body: bytes (Content-Length) or an iterable of bytes pieces
        (chunked, unless headers carry Content-Length). Bodies over 256 KiB and iterables
        are sent from a thread, so a response streamed back meanwhile can be read."""
        streamed = body is not None and not isinstance(body, (bytes, bytearray, memoryview))
        items = _header_items(headers)
        has_length = any(k.lower() == "content-length" for k, _ in items)
        chunked = streamed and not has_length
        self._methods.append(method.upper())
        if not streamed and (body is None or len(body) <= 1 << 18):
            self.send(build_request(method, path, items, body, self.host_header()))
            return
        if not streamed and not has_length:
            items.append(("Content-Length", str(len(body))))
        self.send(build_request(method, path, items, None, self.host_header(), chunked))
        self._start_sender(encode_chunks(body) if chunked else body if streamed else [body])

    def host_header(self) -> str:
        return f"{self.host}:{self.port}"

    def _start_sender(self, pieces: Iterable[bytes]) -> None:
        out = self.sock.dup()  # own timeout; the reader changes the original's
        out.settimeout(self.timeout)
        error: list = []

        def run():
            try:
                for piece in pieces:
                    out.sendall(piece)
            except OSError as e:
                error.append(e)
            finally:
                out.close()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self._senders.append((thread, error))

    def wait_sent(self, timeout: float | None = None, raise_errors: bool = True) -> None:
        """Waits for bodies still being sent; re-raises a send error if `raise_errors`."""
        for thread, error in self._senders:
            thread.join(timeout or self.timeout)
            if thread.is_alive():
                raise TimeoutError("request body still being sent")
            if error and raise_errors:
                raise error[0]
        self._senders.clear()

    def read_response(self, timeout: float | None = None) -> Response:
        """The response to the oldest request not yet answered."""
        method = self._methods.pop(0) if self._methods else "GET"
        return read_response(self.reader, method, timeout or self.timeout)

    def request(self, method: str, path: str, headers=None, body=None,
                timeout: float | None = None) -> Response:
        """send_request + read_response. A complete response counts even if the peer stopped
        reading the body early (a 413 then close): the send error is then dropped."""
        self.send_request(method, path, headers, body)
        resp = self.read_response(timeout)
        self.wait_sent(timeout, raise_errors=False)
        return resp

    def peer_closed(self, timeout: float = 1.0) -> bool:
        """True when the peer closes (EOF or reset) within `timeout` with nothing pending."""
        try:
            return not self.reader.fill(time.monotonic() + timeout) and not self.reader.buf
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> HttpConnection:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def http_request(host: str, port: int, method: str, path: str, headers=None, body=None,
                 timeout: float = DEFAULT_TIMEOUT) -> Response:
    """One request on a new connection, closed afterwards."""
    with HttpConnection(host, port, timeout) as conn:
        return conn.request(method, path, headers, body, timeout)


def get_from(source_ip: str, port: int, path: str = "/",
             timeout: float = DEFAULT_TIMEOUT) -> Response:
    """GET on a new connection from the loopback address `source_ip` (127.x.y.z: a client
    of its own for ip_hash), closed afterwards."""
    with socket.create_connection((HOST, port), timeout=timeout,
                                  source_address=(source_ip, 0)) as sock:
        sock.sendall(build_request("GET", path, [("Host", "t"), ("Connection", "close")]))
        return read_response(_Reader(sock), "GET", timeout)


def send_raw(host: str, port: int, data: bytes, method: str = "GET",
             timeout: float = DEFAULT_TIMEOUT) -> Response:
    """Sends hand-made bytes on a new connection and reads one response."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(data)
        return read_response(_Reader(sock), method, timeout)


def exchange_raw(host: str, port: int, data: bytes, timeout: float = DEFAULT_TIMEOUT) -> bytes:
    """Sends hand-made bytes and returns everything received until the peer closes."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(data)
        return _Reader(sock).read_to_eof(time.monotonic() + timeout)


# ----------------------------------------------------------------------------- WebSocket

_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _mask(payload: bytes, key: bytes) -> bytes:
    """XOR with the 4-byte key repeated (big-int XOR: fast for MB payloads)."""
    n = len(payload)
    if n == 0:
        return b""
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(stream, "little")).to_bytes(
        n, "little")


class WebSocket:
    """Minimal RFC 6455 client: masked frames, reassembly, automatic pong."""

    CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

    def __init__(self, sock: socket.socket, reader: _Reader, response: Response,
                 timeout: float):
        self.sock, self.reader, self.response, self.timeout = sock, reader, response, timeout
        self.close_code: int | None = None  # set when the peer's close frame arrives
        self.close_reason = ""
        self.close_sent = False
        self.pongs: list[bytes] = []

    @classmethod
    def connect(cls, host: str, port: int, path: str = "/", headers=None,
                timeout: float = DEFAULT_TIMEOUT) -> WebSocket:
        """Opens the connection and does the upgrade; raises ValueError unless the answer is
        101 with the right Sec-WebSocket-Accept (the Response is in the error's args)."""
        key = base64.b64encode(os.urandom(16))
        items = [("Host", f"{host}:{port}"), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
                 ("Sec-WebSocket-Key", key.decode()), ("Sec-WebSocket-Version", "13")]
        items += _header_items(headers)
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.sendall(build_request("GET", path, items))
            reader = _Reader(sock)
            resp = read_response(reader, "GET", timeout)
            expected = base64.b64encode(hashlib.sha1(key + _WS_GUID).digest()).decode()
            if resp.status != 101:
                raise ValueError(f"upgrade refused: {resp.status}", resp)
            if resp.header("Sec-WebSocket-Accept") != expected:
                raise ValueError("bad Sec-WebSocket-Accept", resp)
        except BaseException:
            sock.close()
            raise
        return cls(sock, reader, resp, timeout)

    def send_frame(self, opcode: int, payload: bytes, fin: bool = True) -> None:
        """One masked frame (any payload size)."""
        n = len(payload)
        head = bytes([(0x80 if fin else 0) | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 1 << 16:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        key = os.urandom(4)
        self.sock.settimeout(self.timeout)
        self.sock.sendall(head + key + _mask(payload, key))

    def send_text(self, text: str | bytes) -> None:
        self.send_frame(self.TEXT, text.encode() if isinstance(text, str) else text)

    def send_binary(self, data: bytes) -> None:
        self.send_frame(self.BINARY, data)

    def ping(self, payload: bytes = b"") -> None:
        self.send_frame(self.PING, payload)

    def _recv_frame(self, deadline: float) -> tuple[bool, int, bytes]:
        b0, b1 = self.reader.read_exact(2, deadline)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self.reader.read_exact(2, deadline))[0]
        elif n == 127:
            n = struct.unpack("!Q", self.reader.read_exact(8, deadline))[0]
        key = self.reader.read_exact(4, deadline) if b1 & 0x80 else None
        payload = self.reader.read_exact(n, deadline)
        return bool(b0 & 0x80), b0 & 0x0F, _mask(payload, key) if key else payload

    def recv(self, timeout: float | None = None) -> tuple[int, bytes]:
        """Next message as (opcode, payload): TEXT or BINARY reassembled, or CLOSE (then
        close_code/close_reason are set and a close frame is answered). Pings are answered
        with pongs and pongs recorded in .pongs; neither is returned."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        opcode, parts = None, []
        while True:
            fin, op, payload = self._recv_frame(deadline)
            if op == self.PING:
                self.send_frame(self.PONG, payload)
            elif op == self.PONG:
                self.pongs.append(payload)
            elif op == self.CLOSE:
                self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 \
                    else 1005
                self.close_reason = payload[2:].decode(errors="replace")
                if not self.close_sent:
                    self._send_close(payload[:2])
                return self.CLOSE, payload
            else:
                if op != self.CONT:
                    opcode = op
                parts.append(payload)
                if fin:
                    return opcode, b"".join(parts)

    def recv_text(self, timeout: float | None = None) -> str:
        opcode, payload = self.recv(timeout)
        if opcode != self.TEXT:
            raise ValueError(f"expected a text message, got opcode {opcode}")
        return payload.decode()

    def _send_close(self, payload: bytes) -> None:
        self.close_sent = True
        try:
            self.send_frame(self.CLOSE, payload)
        except OSError:
            pass

    def close(self, code: int = 1000, reason: str = "", timeout: float = 5.0) -> int | None:
        """Sends a close frame, waits (bounded) for the peer's, closes the socket; returns the
        peer's close code (None if none came)."""
        if not self.close_sent:
            self._send_close(struct.pack("!H", code) + reason.encode())
        deadline = time.monotonic() + timeout
        try:
            while self.close_code is None and time.monotonic() < deadline:
                self.recv(deadline - time.monotonic())
        except (OSError, ValueError):
            pass
        self.sock.close()
        return self.close_code

    def abort(self) -> None:
        """Closes the TCP connection without a close frame."""
        self.sock.close()

    def __enter__(self) -> WebSocket:
        return self

    def __exit__(self, *exc) -> None:
        if self.sock.fileno() >= 0:
            self.close(timeout=1.0)
