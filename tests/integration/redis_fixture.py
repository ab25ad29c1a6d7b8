"""A real redis-server for the tests, and a minimal RESP client (Python stdlib only).

Used by the integration tests here and by tests/interop (which put this folder on sys.path).
RedisServer runs `redis-server` on 127.0.0.1 (a free port, no persistence, DEBUG allowed so
that tests can make it slow), is registered with the harness's exit-time cleanup and is
stopped by PID only. redis_commands() sends commands pipelined on one connection.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time

from harness import HOST, START_TIMEOUT, _live, on_free_ports, raise_if_port_taken

REDIS = shutil.which("redis-server")


class RedisError(Exception):
    """An error reply (-ERR ...)."""


def _read_reply(f):
    line = f.readline()
    if not line:
        raise ConnectionError("redis closed the connection")
    kind, rest = line[:1], line[1:].rstrip(b"\r\n").decode()
    if kind == b"+":
        return rest
    if kind == b"-":
        return RedisError(rest)
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        return None if n < 0 else f.read(n + 2)[:-2].decode()
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_read_reply(f) for _ in range(n)]
    raise RedisError(f"unexpected reply {line!r}")


def redis_commands(port: int, commands, timeout: float = 5.0, raise_errors: bool = True) -> list:
    """Sends `commands` (lists of arguments) pipelined on one new connection; their replies:
    simple and bulk strings as str, integers as int, nil as None, arrays as lists. An error
    reply raises RedisError, or is returned as one when `raise_errors` is false."""
    out = bytearray()
    for args in commands:
        out += f"*{len(args)}\r\n".encode()
        for a in args:
            b = str(a).encode()
            out += f"${len(b)}\r\n".encode() + b + b"\r\n"
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(out)
        f = s.makefile("rb")
        replies = [_read_reply(f) for _ in commands]
    if raise_errors:
        for r in replies:
            if isinstance(r, RedisError):
                raise r
    return replies


def wait_redis_ready(port: int, proc: subprocess.Popen,
                     timeout: float = START_TIMEOUT) -> None:
    """Until the server on `port` answers PING; RuntimeError when `proc` exits first,
    TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server on port {port} exited ({proc.returncode})")
        try:
            if redis_commands(port, [["PING"]], timeout=1) == ["PONG"]:
                return
        except (OSError, RedisError):
            pass
        time.sleep(0.02)
    raise TimeoutError(f"redis-server on port {port} did not answer PING within {timeout} s")


class RedisServer:
    """A redis-server on 127.0.0.1:port, no persistence, stopped by PID. The port (`port`, or
    a free one) is moved to another free one when it was taken before redis-server bound it
    (on_free_ports): read .port. start() after kill() restarts it empty on the same port."""

    def __init__(self, port: int | None = None):
        self.dir = tempfile.mkdtemp(prefix="tether-redis-")

        def first_start(ports: list[int]) -> None:
            self.port = ports[0]
            self.start()
        on_free_ports(first_start, [port] if port else 1)

    def start(self) -> None:
        log = os.path.join(self.dir, "redis.log")
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [REDIS, "--port", str(self.port), "--bind", HOST, "--save", "", "--appendonly",
                 "no", "--enable-debug-command", "yes", "--dir", self.dir],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        _live.add(self.proc)
        try:
            wait_redis_ready(self.port, self.proc)
        except RuntimeError as e:  # it exited: why is in its log
            with open(log, "rb") as f:
                output = f.read().decode(errors="replace")[-2000:]
            raise_if_port_taken(output, f"{e}: {output}")
            raise RuntimeError(f"{e}: {output}") from None

    def kill(self) -> None:
        """SIGKILL (a crashed Redis)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        _live.discard(self.proc)

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def command(self, *args: str, timeout: float = 5.0):
        """One command; its reply (an error reply as its text), or None when Redis is not there."""
        try:
            reply = redis_commands(self.port, [args], timeout=timeout, raise_errors=False)[0]
        except OSError:
            return None
        return str(reply) if isinstance(reply, RedisError) else reply
