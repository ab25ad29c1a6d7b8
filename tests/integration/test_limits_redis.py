"""Rate limits per client IP (limits.rate) and connections per IP (limits.max_connections_per_ip).

Real tether processes, real demo backends and, for the shared budget, a real redis-server.
Clients are told apart by their source address (127.0.0.x). Checks: the local token bucket
(burst, then 429 with Retry-After and X-Request-Id, then refill), one bucket per IP; two
replicas sharing Redis hold the *combined* rate of one IP; with Redis killed, each replica
holds the rate on its own (local limits); max_connections_per_ip closes the connection over
the limit while other addresses and the existing connections go on.
Label: integration;redis.
"""

import socket
import threading
import time
import unittest

from harness import HOST, Backend, Tether, free_ports, http_request, tether_config
from redis_fixture import REDIS, RedisServer


def request_from(ip, port):
    """(status, headers text) of one GET / from `ip` on a new connection."""
    with socket.create_connection((HOST, port), timeout=5, source_address=(ip, 0)) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    if not data:
        return 0, ""  # closed unanswered
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    return int(head.split(" ", 2)[1]), head


class LimitsTest(unittest.TestCase):
    def setUp(self):
        self.backend = Backend("s1")
        self.tethers = []
        self.redis = None

    def tearDown(self):
        for t in self.tethers:
            t.close()
        self.backend.stop()
        if self.redis:
            self.redis.close()

    def tether(self, rate=None, redis=False, per_ip=None, admin=False):
        port, admin_port = free_ports(2)
        limits = {}
        if rate:
            limits["rate"] = rate
        if per_ip:
            limits["max_connections_per_ip"] = per_ip
        extra = {"limits": limits} if limits else {}
        if redis:
            extra["redis"] = {"address": f"{HOST}:{self.redis.port}", "key_prefix": "lim:"}
        if admin:
            extra["admin"] = {"address": f"{HOST}:{admin_port}"}
        t = Tether(tether_config([("s1", self.backend.port)], port, workers=2,
                                 access_log='path: "off"', **extra),
                   ports=[port, admin_port] if admin else [port])
        self.tethers.append(t)
        if admin:
            t.admin_port = t.ports[1]  # the port is listened on (moved if it was taken)
        if redis:
            deadline = time.monotonic() + 10
            while "redis: connected" not in t.logs():
                self.assertLess(time.monotonic(), deadline, t.logs())
                time.sleep(0.02)
        return t

    def metrics(self, t):
        return http_request(HOST, t.admin_port, "GET", "/metrics").text

    def count_allowed(self, ip, tethers, seconds):
        """Requests from `ip` round-robin over `tethers` for `seconds`: (allowed, refused)."""
        ok = refused = 0
        end, i = time.monotonic() + seconds, 0
        while time.monotonic() < end:
            status, _ = request_from(ip, tethers[i % len(tethers)].port)
            i += 1
            if status == 200:
                ok += 1
            elif status == 429:
                refused += 1
            else:
                self.fail(f"unexpected status {status}")
        return ok, refused

    def test_local_bucket_burst_then_429_then_refill(self):
        # 0.5/s: a token every 2 s, so a slow machine cannot refill one mid-test.
        t = self.tether(rate={"requests_per_second": 0.5, "burst": 5, "shared": False}, admin=True)
        t0 = time.monotonic()
        statuses = [request_from("127.0.3.1", t.port) for _ in range(8)]
        self.assertLess(time.monotonic() - t0, 2.0, "too slow to test a 2 s refill")
        self.assertEqual([s for s, _ in statuses], [200] * 5 + [429] * 3)
        head = statuses[5][1]
        self.assertRegex(head, r"Retry-After: [12]\r")
        self.assertIn("X-Request-Id:", head)
        # Another address has its own bucket.
        self.assertEqual(request_from("127.0.3.2", t.port)[0], 200)
        time.sleep(2.1)  # one token back
        self.assertEqual(request_from("127.0.3.1", t.port)[0], 200)
        self.assertIn("tether_rate_limited_total 3", self.metrics(t))

    @unittest.skipUnless(REDIS, "redis-server not installed")
    def test_two_replicas_share_one_budget_through_redis(self):
        self.redis = RedisServer()
        rate = {"requests_per_second": 5, "burst": 10, "shared": True}
        a = self.tether(rate=rate, redis=True)
        b = self.tether(rate=rate, redis=True)
        ok, refused = self.count_allowed("127.0.4.1", [a, b], 3.0)
        # One budget: burst + rate x time = 10 + 5 x 3 = 25 (two local budgets would be 50).
        self.assertGreaterEqual(ok, 10)
        self.assertLessEqual(ok, 28)
        self.assertGreater(refused, 0)
        bucket = self.redis.command("HGET", "lim:rate:127.0.4.1", "tokens")
        self.assertIsNotNone(bucket)

    @unittest.skipUnless(REDIS, "redis-server not installed")
    def test_redis_down_local_limits_hold(self):
        self.redis = RedisServer()
        rate = {"requests_per_second": 5, "burst": 10, "shared": True}
        a = self.tether(rate=rate, redis=True, admin=True)
        b = self.tether(rate=rate, redis=True)
        self.redis.kill()
        time.sleep(0.3)
        ok_a, _ = self.count_allowed("127.0.5.1", [a], 2.0)
        ok_b, _ = self.count_allowed("127.0.5.1", [b], 2.0)
        # Each replica alone: 10 + 5 x 2 = 20 at most, and no request failed.
        for ok in (ok_a, ok_b):
            self.assertGreaterEqual(ok, 10)
            self.assertLessEqual(ok, 22)
        m = self.metrics(a)
        self.assertIn("tether_redis_up 0", m)
        self.assertNotIn("tether_rate_limit_redis_fallbacks_total 0", m)

    def test_connections_per_ip(self):
        t = self.tether(per_ip=3, admin=True)
        held = []
        for _ in range(3):
            s = socket.create_connection((HOST, t.port), timeout=5, source_address=("127.0.6.1", 0))
            # An answer proves tether accepted (and counted) it before the next one.
            s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            self.assertIn(b"200 OK", s.recv(4096))
            held.append(s)
        # The fourth from the same address is closed unanswered...
        extra = socket.create_connection((HOST, t.port), timeout=5, source_address=("127.0.6.1", 0))
        extra.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        try:
            self.assertEqual(extra.recv(100), b"")
        except ConnectionResetError:
            pass
        extra.close()
        # ...while the three held ones work, and so does another address.
        for s in held:
            s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            self.assertIn(b"200 OK", s.recv(4096))
        self.assertEqual(request_from("127.0.6.2", t.port)[0], 200)
        held.pop().close()
        deadline = time.monotonic() + 5
        while True:  # the slot comes back once tether has seen the close
            try:
                if request_from("127.0.6.1", t.port)[0] == 200:
                    break
            except OSError:
                pass
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.05)
        for s in held:
            s.close()
        self.assertRegex(self.metrics(t),
                         r'tether_connections_refused_total\{reason="max_connections_per_ip"\} [1-9]')


if __name__ == "__main__":
    unittest.main()
