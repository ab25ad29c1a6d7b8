"""Every thread of tether busy at once: 2 workers, the Redis client thread, the health
checker, the admin server, the access-log writer and the main thread's reloads, all for the
same servers, for a few seconds (the real tether binary, real demo backends, a real
redis-server).

What each thread does meanwhile:
- workers: HTTP requests on new and kept-alive connections from several client IPs
  (ip_hash affinity kept in Redis, a shared rate limit through Redis, the access log),
  requests to a second upstream whose server `dead` refuses connections (passive failures
  from both workers take it out for 100 ms at a time; the retry goes to s2),
  HTTPS requests on a TLS listener resuming the last session (TLS 1.2 tickets, whose keys
  every reload rotates), and WebSocket echo tunnels;
- admin: /metrics and /status scraped in a loop (each a snapshot posted to every worker),
  and s1 drained and re-enabled through the drain API (which closes s1's tunnels on every
  worker and is published to the replicas through Redis);
- health checker: active checks every 100 ms, their settings changed by reloads (probers
  replaced);
- main: SIGHUP reloads that re-weight s1 and change the checks.

Checks: every request is answered 200 by a configured server, every echo comes back (a
tunnel of s1 may be closed with 1001 by a drain: the client reconnects), every scrape and
drain call succeeds, tether stops cleanly (exit 0); and a SIGTERM in the middle of the same
load ends the process with 0 within timeouts.shutdown. Under `tools/dev.sh test --tsan` this is
the test that puts the cross-thread paths side by side for ThreadSanitizer (the harness
fails it on any report). Label: integration (skipped without redis-server).
"""

import os
import re
import signal
import socket
import ssl
import threading
import time
import unittest
from types import SimpleNamespace

from harness import (HOST, Backend, HttpConnection, Tether, WebSocket, _Reader, build_request,
                     free_ports, get_from, http_request, read_response)
from redis_fixture import REDIS, RedisServer
from tls_certs import PkiTestCase, make_ca, make_leaf

LOAD_SECONDS = 4.0
SHUTDOWN_SECONDS = 5
CLIENT_IPS = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]


@unittest.skipUnless(REDIS, "redis-server not installed")
class CrossThreadTest(PkiTestCase):
    pki_prefix = "tether-xt-pki-"

    @classmethod
    def make_certificates(cls):
        make_ca(cls.pki)
        make_leaf(cls.pki, "localhost", ["localhost"])

    def setUp(self):
        self.redis = RedisServer()
        self.addCleanup(self.redis.close)
        self.backends = [Backend(n) for n in ("s1", "s2")]
        for b in self.backends:
            self.addCleanup(b.__exit__)
        # Distinct ports (free_port() twice can return one port twice: "duplicate listen
        # address" under ASan at 3369879).
        self.port, self.tls_port, self.admin_port, self.passive_port, dead = free_ports(5)
        self.dead = f"{HOST}:{dead}"

    def config(self, generation: int) -> str:
        """Generation g: s1 weighs 1 + g % 2, the checks run every 100 or 150 ms."""
        s1, s2 = self.backends
        pki = self.pki
        return f"""workers: 2
admin:
  address: {HOST}:{self.admin_port}
redis:
  address: {HOST}:{self.redis.port}
  key_prefix: "xt:"
listen:
  - address: {HOST}:{self.port}
    upstream: u
  - address: {HOST}:{self.tls_port}
    upstream: u
    tls:
      certificate: {pki}/localhost.pem
      private_key: {pki}/localhost.key
  - address: {HOST}:{self.passive_port}
    upstream: v
upstreams:
  v:
    retries: 1
    servers:
      - name: dead
        address: {self.dead}
        max_fails: 1
        fail_timeout: 100ms
      - name: s2
        address: {HOST}:{s2.port}
  u:
    affinity: ip_hash
    balance: round_robin
    drain:
      close_spread: 200ms
    servers:
      - name: s1
        address: {HOST}:{s1.port}
        weight: {1 + generation % 2}
      - name: s2
        address: {HOST}:{s2.port}
    health_check:
      path: /healthz
      interval: {"100ms" if generation % 2 else "150ms"}
      timeout: 1s
      rise: 1
      fall: 3
timeouts:
  shutdown: {SHUTDOWN_SECONDS}s
limits:
  rate:
    requests_per_second: 100000
    burst: 100000
    shared: true
access_log:
  path: stdout
"""

    def admin(self, method: str, path: str):
        return http_request(HOST, self.admin_port, method, path, timeout=10)

    def start(self) -> Tether:
        t = Tether(self.config(0),
                   ports=[self.port, self.tls_port, self.passive_port, self.admin_port])
        self.addCleanup(t.close)
        self.port, self.tls_port, self.passive_port, self.admin_port = t.ports  # moved if taken
        deadline = time.monotonic() + 10
        while "redis: connected" not in t.logs():
            self.assertLess(time.monotonic(), deadline, t.logs())
            time.sleep(0.02)
        return t

    def load(self):
        """Starts one thread per kind of work, each looping until `.stop` is set; returns
        .stop (an Event), .threads, .errors (the first failure of each thread, which then
        ends), .done (loops completed by kind, filled as threads end) and .resumed (one item
        per resumed TLS session)."""
        names = {b.name for b in self.backends}
        stop = threading.Event()
        errors, done, resumed = [], {}, []
        lock = threading.Lock()

        def loop(kind, step):
            def run():
                n = 0
                try:
                    while not stop.is_set():
                        step()
                        n += 1
                except Exception as e:  # reported by the test, with the kind of work
                    with lock:
                        errors.append(f"{kind}: {e!r}")
                with lock:
                    done[kind] = done.get(kind, 0) + n
            return threading.Thread(target=run, name=kind)

        def new_connection(ip):
            def step():
                r = get_from(ip, self.port, "/")
                if r.status != 200 or r.header("X-Backend") not in names:
                    raise AssertionError(f"{r.status} {r.header('X-Backend')} {r.text[:200]}")
            return step

        def passive():
            r = http_request(HOST, self.passive_port, "GET", "/")
            if r.status != 200 or r.header("X-Backend") != "s2":
                raise AssertionError(f"passive: {r.status} {r.text[:200]}")

        def kept_alive():
            with HttpConnection(HOST, self.port) as c:
                for _ in range(5):
                    r = c.request("GET", "/")
                    if r.status != 200:
                        raise AssertionError(f"{r.status} {r.text[:200]}")

        tls_ctx = ssl.create_default_context(cafile=os.path.join(self.pki, "ca.pem"))
        tls_ctx.maximum_version = ssl.TLSVersion.TLSv1_2  # the session is known after the
        last_session = []                                 # handshake: resumed by ticket

        def https():
            raw = socket.create_connection((HOST, self.tls_port), timeout=10)
            with tls_ctx.wrap_socket(raw, server_hostname="localhost",
                                     session=last_session[-1] if last_session else None) as s:
                s.sendall(build_request("GET", "/", [("Host", "localhost"),
                                                     ("Connection", "close")]))
                r = read_response(_Reader(s), "GET", 10)
                if r.status != 200 or r.header("X-Backend") not in names:
                    raise AssertionError(f"https: {r.status} {r.text[:200]}")
                if s.session_reused:
                    with lock:
                        resumed.append(1)
                last_session[:] = [s.session]

        def echo():
            with WebSocket.connect(HOST, self.port, "/ws") as ws:
                for i in range(5):
                    ws.send_text(f"m{i}")
                    opcode, got = ws.recv(timeout=10)
                    if opcode == WebSocket.CLOSE and ws.close_code == 1001:
                        return  # s1 drained (or tether stopping): tunnels close with 1001
                    if (opcode, got) != (WebSocket.TEXT, f"m{i}".encode()):
                        raise AssertionError(f"echo {opcode} {got!r} for m{i}")

        def scrape():
            for path in ("/metrics", "/status"):
                r = self.admin("GET", path)
                if r.status != 200:
                    raise AssertionError(f"{path}: {r.status}")

        def drain_and_enable():
            for action in ("drain", "enable"):
                r = self.admin("POST", f"/upstreams/u/servers/s1/{action}")
                if r.status != 200:
                    raise AssertionError(f"{action}: {r.status} {r.text}")
                time.sleep(0.05)

        threads = [loop(f"http {ip}", new_connection(ip)) for ip in CLIENT_IPS]
        threads += [loop("keep-alive", kept_alive), loop("websocket", echo),
                    loop("https", https), loop("dead server", passive),
                    loop("dead server", passive), loop("scrape", scrape),
                    loop("drain", drain_and_enable)]
        for th in threads:
            th.start()
        self.addCleanup(lambda: (stop.set(), [th.join(30) for th in threads]))
        return SimpleNamespace(stop=stop, threads=threads, errors=errors, done=done,
                               resumed=resumed)

    def reload_for(self, t: Tether, seconds: float) -> int:
        """SIGHUP every 0.3 s for `seconds` (alternate weights and check intervals); the
        number of reloads."""
        reloads, end = 0, time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(0.3)
            reloads += 1
            t.reload(self.config(reloads))
        return reloads

    def test_requests_tunnels_scrapes_drains_and_reloads_at_once(self):
        t = self.start()
        load = self.load()
        reloads = self.reload_for(t, LOAD_SECONDS)
        load.stop.set()
        for th in load.threads:
            th.join(30)
        self.assertFalse([th.name for th in load.threads if th.is_alive()], "still running")
        self.assertEqual(load.errors, [], t.logs()[-3000:])
        self.assertEqual(set(load.done), {th.name for th in load.threads})
        self.assertTrue(all(n > 0 for n in load.done.values()), load.done)
        self.assertGreater(len(load.resumed), 0, "no TLS session resumed")
        print(f"\nloops done in {LOAD_SECONDS:.0f} s with {reloads} reloads: {load.done}, "
              f"{len(load.resumed)} TLS sessions resumed")
        deadline = time.monotonic() + 10  # the last SIGHUP is handled: the start was 1
        while f"(generation {reloads + 1})" not in t.logs():
            self.assertLess(time.monotonic(), deadline, t.logs()[-3000:])
            time.sleep(0.02)
        metrics = self.admin("GET", "/metrics").text
        ejections = re.search(r'^tether_upstream_server_ejections_total\{upstream="v",'
                              r'server="dead"\} (\S+)$', metrics, re.M)
        self.assertIsNotNone(ejections, metrics[:3000])
        self.assertGreater(float(ejections.group(1)), 1)  # out, back on probation, out again
        print(f"server dead taken out {float(ejections.group(1)):.0f} times")
        self.assertEqual(t.stop(), 0, t.logs()[-3000:])

    def test_sigterm_while_everything_runs_exits_0_in_time(self):
        """Graceful stop in the middle of the same load: listeners close, tunnels get 1001,
        the Redis client and health checker stop with completions still pending. The
        clients' errors after SIGTERM are expected (refused, closed) and not checked."""
        t = self.start()
        load = self.load()
        self.reload_for(t, 1.5)
        self.assertEqual(load.errors, [], "before SIGTERM")
        started = time.monotonic()
        t.signal(signal.SIGTERM)
        self.assertEqual(t.wait(SHUTDOWN_SECONDS + 5), 0, t.logs()[-3000:])
        self.assertLess(time.monotonic() - started, SHUTDOWN_SECONDS + 2)
        self.assertIn("stopped", t.logs())
        load.stop.set()


if __name__ == "__main__":
    unittest.main()
