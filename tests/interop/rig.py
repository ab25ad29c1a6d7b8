"""The process rig of the interop tests (test_interop.py, test_replicas.py): what they need
installed, free ports, starting a process with its output in files, reading server.js's
`listening PORT` line, a redis-server, and stopping what was started, by PID, in reverse order.

A rig's processes are kept as a list of (name, Popen) in the order they were started; each
writes NAME.stderr (and NAME.stdout unless given another stdout) in the rig's directory.
Python stdlib only.
"""

import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))  # the shared Redis fixture
from redis_fixture import wait_redis_ready  # noqa: E402
from harness import START_TIMEOUT, raise_if_port_taken, sanitizer_report, wait_port  # noqa: E402

NPM_CI_TIMEOUT = 300
_npm_ready = None  # None = not tried, else (ok, message)


def require_tools(cls):
    """Sets cls.tether_bin (TETHER_BIN, absolute), cls.redis_bin and cls.node, after `npm ci`
    when node_modules is missing; raises unittest.SkipTest naming what is missing."""
    cls.tether_bin = os.environ.get("TETHER_BIN")
    if not cls.tether_bin or not os.access(cls.tether_bin, os.X_OK):
        raise unittest.SkipTest("TETHER_BIN is not set to an executable")
    cls.tether_bin = os.path.abspath(cls.tether_bin)
    cls.redis_bin = shutil.which("redis-server")
    if not cls.redis_bin:
        raise unittest.SkipTest("redis-server not installed")
    cls.node = shutil.which("node")
    ok, msg = ensure_node_modules()
    if not ok:
        raise unittest.SkipTest(msg)


def ensure_node_modules():
    """Runs `npm ci` once (bounded) when node_modules is missing; returns (ok, message)."""
    global _npm_ready
    if _npm_ready is not None:
        return _npm_ready
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        _npm_ready = (False, "node/npm not installed")
        return _npm_ready
    marker = os.path.join(HERE, "node_modules", "socket.io", "package.json")
    if not os.path.exists(marker):
        try:
            p = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=HERE,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               timeout=NPM_CI_TIMEOUT, text=True)
        except subprocess.TimeoutExpired:
            _npm_ready = (False, f"npm ci took more than {NPM_CI_TIMEOUT} s")
            return _npm_ready
        if p.returncode != 0:
            _npm_ready = (False, "npm ci failed:\n" + p.stdout[-3000:])
            return _npm_ready
    _npm_ready = (True, "")
    return _npm_ready


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path, n=30):
    try:
        with open(path, "r", errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def read_from(path, offset):
    """What `path` holds past `offset` bytes ("" when it does not exist)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def size(path):
    return os.path.getsize(path) if os.path.exists(path) else 0


def spawn_listening(tmp, procs, name, argv, ports, timeout=START_TIMEOUT):
    """spawn() of a process that is to listen on every port of `ports`, once it does (within
    `timeout` s). When it exits first: harness.PortTaken if its stderr of this start says a
    port was taken (on_free_ports can start it again on others), else RuntimeError with it;
    TimeoutError if it does not listen in time."""
    log = os.path.join(tmp, f"{name}.stderr")
    log_at = size(log)  # the file is appended to: an earlier start's lines are before
    p = spawn(tmp, procs, name, argv)
    deadline = time.monotonic() + timeout
    for port in ports:
        wait_port(port, max(0.0, deadline - time.monotonic()), proc=p,
                  output=lambda: read_from(log, log_at))
    return p


def spawn(tmp, procs, name, argv, stdout=None, cwd=None):
    """Starts argv in cwd (default tmp) with stderr to tmp/NAME.stderr and stdout to `stdout`
    (a file or subprocess.PIPE) or else tmp/NAME.stdout; appends (name, Popen) to procs."""
    err = open(os.path.join(tmp, f"{name}.stderr"), "ab")
    out = stdout if stdout is not None else open(os.path.join(tmp, f"{name}.stdout"), "ab")
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=cwd or tmp)
    err.close()
    if stdout is None:
        out.close()
    procs.append((name, p))
    return p


def stop(p, grace=5.0):
    """SIGTERM to p's PID, SIGKILL after `grace` seconds."""
    if p.poll() is not None:
        return
    try:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(timeout=5)
    except ProcessLookupError:
        pass


def stop_all(procs, tmp):
    """Stops every process of procs, the last started first, and closes their stdout pipes.
    Then raises AssertionError, failing the test whose cleanup this is, with what a sanitizer
    reported in a tether (a process whose name starts with "tether"): its ASan or TSan report
    file, or a UBSan report in its stderr (tmp/NAME.stderr, see spawn), which no other check
    reads (harness.sanitizer_report)."""
    for _, p in reversed(procs):
        stop(p)
        if p.stdout:
            p.stdout.close()
    reports = []
    for name, p in procs:
        if not name.startswith("tether"):
            continue
        report = sanitizer_report(p.pid, tail(os.path.join(tmp, f"{name}.stderr"), 10**6))
        if report:
            reports.append(f"{name} (pid {p.pid}): a sanitizer reported:\n{report[:20000]}")
    if reports:
        raise AssertionError("\n".join(reports))


def stderr_tails(places, n=30):
    """The last n lines of each process's stderr, for failure messages; places is a list of
    (tmp, procs)."""
    parts = []
    for tmp, procs in places:
        for name, _ in procs:
            t = tail(os.path.join(tmp, f"{name}.stderr"), n)
            if t.strip():
                parts.append(f"--- {name} stderr ---\n{t}")
    return "\n".join(parts)


def start_redis(redis_bin, tmp, procs, name, port, debug=False):
    """A redis-server on 127.0.0.1:port without persistence (DEBUG allowed from localhost when
    debug), ready to answer; harness.PortTaken when it exited because the port was taken,
    RuntimeError with its output otherwise."""
    argv = [redis_bin, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no"] + (["--enable-debug-command", "local"] if debug else [])
    log = os.path.join(tmp, f"{name}.stdout")
    log_at = size(log)
    p = spawn(tmp, procs, name, argv)
    try:
        wait_redis_ready(port, p)
    except (RuntimeError, TimeoutError) as e:
        output = read_from(log, log_at)[-3000:]
        if p.poll() is not None:
            raise_if_port_taken(output, f"{name}: {e}\n{output}")
        raise RuntimeError(f"{name}: {e}\n{output}")
    return p


def read_listening(name, p, timeout):
    """The port in the `listening PORT` line that server.js writes first on its stdout;
    RuntimeError when it writes something else, exits or says nothing within `timeout`."""
    buf = b""
    deadline = time.monotonic() + timeout
    fd = p.stdout.fileno()
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
            if b"\n" in buf:
                line = buf.split(b"\n", 1)[0].decode()
                if line.startswith("listening "):
                    return int(line.split()[1])
                raise RuntimeError(f"{name}: unexpected output {line!r}")
        elif p.poll() is not None:
            break
    raise RuntimeError(f"{name} (server.js) did not start")


def assert_client_clean(test, r, clients, msg):
    """The checks every client.js result passes: all `clients` connected, no error, no
    unknown session, no disconnect, every whoami answered by the server it was pinned to."""
    test.assertNotIn("aborted", r, msg)
    test.assertEqual(r["connected"], clients, msg)
    for key in ("connect_errors", "errors_total", "session_unknown", "disconnects",
                "sticky_violations", "whoami_unanswered"):
        test.assertEqual(r[key], 0, f"{key}{msg}")
    test.assertGreater(r["whoami_ok"], 0, msg)
