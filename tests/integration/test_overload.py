"""Slow clients and overload against the real tether binary and a real demo backend.

- Slowloris: 500 connections trickle a request head one byte a second; each is closed by
  timeouts.client_header (2 s here; the head timer covers the wait for the first byte and
  the head itself, so at most about twice that), unanswered, while 20 normal clients keep
  getting answers. Their latency p99 is printed (measured, not asserted: performance is the
  business of tools/ benchmarks).
- max_connections + 100: with max_connections 200 and 200 held keep-alive connections, 100
  more are accepted and closed unanswered (tether_connections_refused_total counts them),
  the 200 held ones keep working, and once some are released new clients get in again.
- File-descriptor exhaustion: tether started with RLIMIT_NOFILE 64 (soft and hard) and 100
  idle clients: the accept loop backs off instead of spinning (tether's CPU stays low while
  at the limit), nothing crashes, and clients are served again once descriptors are free.

Every socket count and wait is bounded; processes are stopped by PID.
"""

import math
import os
import resource
import selectors
import socket
import threading
import time
import unittest

from harness import HOST, Backend, Tether, free_ports, http_request, tether_config

REQUEST = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"


def raise_fd_limit(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tcp_open(local_port: int, remote_port: int) -> bool:
    """True while a 127.0.0.1 socket with these ports is established or half-closed by the
    peer (CLOSE_WAIT: its owner has not closed it yet), from /proc/net/tcp."""
    suffix = (f":{local_port:04X}", f":{remote_port:04X}")
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            local, remote, state = line.split()[1:4]
            if local.endswith(suffix[0]) and remote.endswith(suffix[1]) and state in ("01", "08"):
                return True
    return False


def p99(values: list) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def request_on(sock: socket.socket) -> bytes:
    """One GET on a kept-alive connection; returns the response head (demo backend: short
    bodies with Content-Length)."""
    sock.sendall(REQUEST)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed in body")
        rest += chunk
    return head


def closed_unanswered(sock: socket.socket, timeout: float) -> bool:
    """True if the peer closes (FIN or RST) without sending a byte within timeout."""
    sock.settimeout(timeout)
    try:
        return sock.recv(100) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


class Overload(unittest.TestCase):
    def setUp(self):
        raise_fd_limit(4096)
        self.backend = Backend("b1", threads=2)
        self.addCleanup(self.backend.stop)

    def start(self, admin=False, preexec=None, workers=2, **overrides):
        port, admin_port = free_ports(2)
        extra = {}
        if admin:
            extra["admin"] = {"address": f"{HOST}:{admin_port}"}
        config = tether_config([("b1", self.backend.port)], port, workers=workers,
                               access_log='path: "off"', **extra, **overrides)
        t = Tether(config, ports=[port, admin_port] if admin else [port], preexec_fn=preexec)
        self.addCleanup(t.close)
        if admin:
            t.admin_port = t.ports[1]  # the port is listened on (moved if it was taken)
        return t

    def test_slowloris_500_closed_by_client_header_while_20_clients_work(self):
        t = self.start(timeouts="client_header: 2s\nidle: 10s")
        head = b"GET /slow HTTP/1.1\r\nHost: t\r\nX-Pad: " + b"a" * 64
        sel = selectors.DefaultSelector()
        slow = []
        for i in range(500):
            s = socket.create_connection((HOST, t.port), timeout=5)
            s.setblocking(False)
            slow.append(s)
            sel.register(s, selectors.EVENT_READ, i)
        opened = time.monotonic()
        closed_at, answered = {}, []

        latencies, failures = [], []
        stop = threading.Event()

        def normal_client():
            while not stop.is_set():
                start = time.monotonic()
                try:
                    r = http_request(HOST, t.port, "GET", "/", timeout=10)
                    if r.status != 200:
                        failures.append(r.status)
                except OSError as e:
                    failures.append(repr(e))
                latencies.append(time.monotonic() - start)
                stop.wait(0.05)

        clients = [threading.Thread(target=normal_client, daemon=True) for _ in range(20)]
        for c in clients:
            c.start()
        try:
            pos, deadline = 0, opened + 20
            next_byte = opened
            while len(closed_at) < len(slow) and time.monotonic() < deadline:
                now = time.monotonic()
                if now >= next_byte and pos < len(head):  # one byte a second to each
                    for i, s in enumerate(slow):
                        if i not in closed_at:
                            try:
                                s.send(head[pos:pos + 1])
                            except OSError:
                                closed_at[i] = now - opened
                    pos += 1
                    next_byte += 1.0
                for key, _ in sel.select(timeout=0.1):
                    i = key.data
                    try:
                        data = key.fileobj.recv(100)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        data = b""
                    if data:
                        answered.append(i)
                    if i not in closed_at:
                        closed_at[i] = time.monotonic() - opened
                    sel.unregister(key.fileobj)
            # The normal clients keep going a little after the last slow one is gone.
            time.sleep(1)
        finally:
            stop.set()
            for c in clients:
                c.join(15)
            for s in slow:
                s.close()
            sel.close()
        self.assertEqual(len(closed_at), 500, f"still open after 20 s: {500 - len(closed_at)}")
        self.assertEqual(answered, [], "a slow client got an answer (it must be closed silently)")
        latest = max(closed_at.values())
        # client_header runs while waiting for the first byte, then again for the head.
        self.assertLessEqual(latest, 2 * 2 + 4, f"closed after {latest:.1f} s")
        self.assertEqual(failures, [])
        self.assertGreater(len(latencies), 100)
        print(f"\nslowloris: 500 slow connections closed after {min(closed_at.values()):.1f}"
              f"-{latest:.1f} s; 20 normal clients: {len(latencies)} requests, all 200, "
              f"p50 {sorted(latencies)[len(latencies) // 2] * 1000:.1f} ms, "
              f"p99 {p99(latencies) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms")
        self.assertTrue(t.running())

    def test_max_connections_plus_100_refused_while_held_ones_work(self):
        t = self.start(admin=True, limits={"max_connections": 200})
        held = []
        for _ in range(200):
            s = socket.create_connection((HOST, t.port), timeout=10)
            self.assertIn(b" 200 ", request_on(s))  # accepted and counted before the next
            held.append(s)
        refused = 0
        for _ in range(100):
            s = socket.create_connection((HOST, t.port), timeout=10)
            try:
                s.sendall(REQUEST)
            except OSError:
                pass
            if closed_unanswered(s, 10):
                refused += 1
            s.close()
        self.assertEqual(refused, 100)
        for s in held:  # every held connection still works
            self.assertIn(b" 200 ", request_on(s))
        metrics = http_request(HOST, t.admin_port, "GET", "/metrics").text
        self.assertIn('tether_connections_refused_total{reason="max_connections"} 100', metrics)
        for s in held[:50]:
            s.close()
        deadline = time.monotonic() + 10
        while True:  # the slots come back once tether has seen the closes
            try:
                if http_request(HOST, t.port, "GET", "/", timeout=5).status == 200:
                    break
            except OSError:
                pass
            self.assertLess(time.monotonic(), deadline, "no slot came back")
            time.sleep(0.05)
        for s in held[50:]:
            self.assertIn(b" 200 ", request_on(s))
            s.close()
        self.assertTrue(t.running())

    def test_fd_exhaustion_backs_off_without_spinning_or_crashing(self):
        def low_nofile():
            resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

        t = self.start(preexec=low_nofile, workers=1)
        # The client paths run once before the limit: a request on a kept-alive connection,
        # then the client's close (EOF, asio's misc error category). Needed by sanitizer
        # builds: the first time UBSan's vptr check meets a (dynamic type, static type) pair
        # it reads the vtable through a pipe() (GCC 12's libsanitizer,
        # IsAccessibleMemoryRange); with no free descriptor that fails and it reports a valid
        # object as one of no such type, and aborts (-fno-sanitize-recover). In a normal
        # build this is only one more request.
        with socket.create_connection((HOST, t.port), timeout=5) as s:
            self.assertIn(b" 200 ", request_on(s))
            peer = s.getsockname()[1]
        deadline = time.monotonic() + 10
        while tcp_open(t.port, peer):  # until tether has read the EOF and closed its side
            self.assertLess(time.monotonic(), deadline, "tether kept the closed connection")
            time.sleep(0.02)
        idle = []
        for _ in range(100):  # the kernel completes handshakes into the backlog
            idle.append(socket.create_connection((HOST, t.port), timeout=5))
        time.sleep(1)  # tether accepts until EMFILE, then backs off
        cpu0, wall0 = cpu_seconds(t.pid), time.monotonic()
        time.sleep(3)
        cpu = (cpu_seconds(t.pid) - cpu0) / (time.monotonic() - wall0)
        print(f"\nfd exhaustion: tether CPU {cpu * 100:.1f}% of a core while at RLIMIT_NOFILE 64")
        self.assertLess(cpu, 0.5, "the accept loop spins at the descriptor limit")
        self.assertTrue(t.running())
        self.assertIn("accept failed", t.logs())
        for s in idle:
            s.close()
        deadline = time.monotonic() + 15
        while True:  # descriptors free again: new clients are served
            try:
                if http_request(HOST, t.port, "GET", "/", timeout=5).status == 200:
                    break
            except OSError:
                pass
            self.assertLess(time.monotonic(), deadline, f"not serving again: {t.logs()[-2000:]}")
            time.sleep(0.1)
        self.assertTrue(t.running())


if __name__ == "__main__":
    unittest.main()
