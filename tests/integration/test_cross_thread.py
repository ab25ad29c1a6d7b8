"""Every thread of tether busy at once: 2 workers, the Redis client thread, the health
checker, the admin server, the access-log writer and the main thread's reloads, all for the
same servers, for a few seconds (the real tether binary, real demo backends, a real
redis-server).

What each thread does meanwhile:
- workers: HTTP requests on new and kept-alive connections from several client IPs
  (ip_hash affinity kept in Redis, a shared rate limit through Redis, the access log), and
  WebSocket echo tunnels;
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

import signal
import threading
import time
import unittest

from harness import (HOST, Backend, HttpConnection, Tether, WebSocket, free_port,
                     get_from, http_request, tether_config, wait_port)
from redis_fixture import REDIS, RedisServer

LOAD_SECONDS = 4.0
SHUTDOWN_SECONDS = 5
CLIENT_IPS = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]


@unittest.skipUnless(REDIS, "redis-server not installed")
class CrossThreadTest(unittest.TestCase):
    def setUp(self):
        self.redis = RedisServer()
        self.addCleanup(self.redis.close)
        self.backends = [Backend(n) for n in ("s1", "s2")]
        for b in self.backends:
            self.addCleanup(b.__exit__)
        self.port, self.admin_port = free_port(), free_port()

    def config(self, generation: int) -> str:
        s1, s2 = self.backends
        return tether_config(
            [("s1", s1.port, {"weight": 1 + generation % 2}), ("s2", s2.port)], self.port,
            workers=2, admin={"address": f"{HOST}:{self.admin_port}"},
            redis={"address": f"{HOST}:{self.redis.port}", "key_prefix": "xt:"},
            timeouts={"shutdown": f"{SHUTDOWN_SECONDS}s"},
            limits={"rate": {"requests_per_second": 100000, "burst": 100000, "shared": True}},
            upstream={"affinity": "ip_hash", "drain": {"close_spread": "200ms"},
                      "health_check": {"path": "/healthz",
                                       "interval": "100ms" if generation % 2 else "150ms",
                                       "timeout": "1s", "rise": 1, "fall": 3}})

    def admin(self, method: str, path: str):
        return http_request(HOST, self.admin_port, method, path, timeout=10)

    def start(self) -> Tether:
        t = Tether(self.config(0))
        self.addCleanup(t.close)
        wait_port(self.admin_port)
        deadline = time.monotonic() + 10
        while "redis: connected" not in t.logs():
            self.assertLess(time.monotonic(), deadline, t.logs())
            time.sleep(0.02)
        return t

    def load(self):
        """Starts one thread per kind of work, each looping until the returned event is set;
        returns (event, threads, errors, done): errors collects the first failure of each
        thread (which then stops), done counts the loops each kind completed."""
        names = {b.name for b in self.backends}
        stop = threading.Event()
        errors, done = [], {}
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
                    raise AssertionError(f"{r.status} {r.header('X-Backend')} {r.text()[:200]}")
            return step

        def kept_alive():
            with HttpConnection(HOST, self.port) as c:
                for _ in range(5):
                    r = c.request("GET", "/")
                    if r.status != 200:
                        raise AssertionError(f"{r.status} {r.text()[:200]}")

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
                    raise AssertionError(f"{action}: {r.status} {r.text()}")
                time.sleep(0.05)

        threads = [loop(f"http {ip}", new_connection(ip)) for ip in CLIENT_IPS]
        threads += [loop("keep-alive", kept_alive), loop("websocket", echo),
                    loop("scrape", scrape), loop("drain", drain_and_enable)]
        for th in threads:
            th.start()
        self.addCleanup(lambda: (stop.set(), [th.join(30) for th in threads]))
        return stop, threads, errors, done

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
        stop, threads, errors, done = self.load()
        reloads = self.reload_for(t, LOAD_SECONDS)
        stop.set()
        for th in threads:
            th.join(30)
        self.assertFalse([th.name for th in threads if th.is_alive()], "threads still running")
        self.assertEqual(errors, [], t.logs()[-3000:])
        self.assertEqual(sorted(done), sorted(th.name for th in threads))
        self.assertTrue(all(n > 0 for n in done.values()), done)
        print(f"\nloops done in {LOAD_SECONDS:.0f} s with {reloads} reloads: {done}")
        self.assertIn(f"(generation {reloads})", t.logs())
        self.assertEqual(t.stop(), 0, t.logs()[-3000:])

    def test_sigterm_while_everything_runs_exits_0_in_time(self):
        """Graceful stop in the middle of the same load: listeners close, tunnels get 1001,
        the Redis client and health checker stop with completions still pending. The
        clients' errors after SIGTERM are expected (refused, closed) and not checked."""
        t = self.start()
        stop, threads, _, done = self.load()
        self.reload_for(t, 1.5)
        self.assertEqual(len(done), 0, "a load thread ended early")
        started = time.monotonic()
        t.signal(signal.SIGTERM)
        self.assertEqual(t.wait(SHUTDOWN_SECONDS + 5), 0, t.logs()[-3000:])
        self.assertLess(time.monotonic() - started, SHUTDOWN_SECONDS + 2)
        self.assertIn("stopped", t.logs())
        stop.set()


if __name__ == "__main__":
    unittest.main()
