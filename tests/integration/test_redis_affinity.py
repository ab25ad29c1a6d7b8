"""Replicas that agree through Redis (issue 4), with demo backends and a real redis-server.

Two or three tether replicas share a real `redis-server` started here on a free port.
Clients are told apart by their source address (127.0.0.x, all on the loopback device), so
`affinity: ip_hash` gives each its own binding. The replicas are given *different* server
lists on purpose ([s1, s2] and [s1, s2, s3]): their own Maglev placements then disagree for
about a third of the clients, and only the shared table can make them agree. A control
replica without Redis shows that disagreement, so each test can fail.

Also: Redis killed (SIGKILL) under load and restarted empty (no failed request, no client
moved, bindings written back), Redis made slow with DEBUG SLEEP (requests routed within
redis.timeout), drains that reach the other replica, and /status and /metrics of Redis.
Label: integration;redis.
"""

import json
import os
import re
import threading
import time
import unittest

from harness import HOST, Backend, Tether, free_ports, get_from, http_request, tether_config
from redis_fixture import REDIS, RedisServer


def status_and_body(source_ip: str, port: int, path: str = "/",
                    timeout: float = 5.0) -> tuple[int, str]:
    """GET on a new connection from `source_ip`; (status, body)."""
    r = get_from(source_ip, port, path, timeout)
    return r.status, r.text


def server_of(body: str) -> str:
    return body.strip().rsplit(" ", 1)[-1]


def client_ips(start: int, count: int) -> list[str]:
    return [f"127.0.{(i // 250) + 1}.{(i % 250) + 1}" for i in range(start, start + count)]


@unittest.skipUnless(REDIS, "redis-server not installed")
class RedisAffinityTest(unittest.TestCase):
    def setUp(self):
        self.redis = RedisServer()
        self.backends = {n: Backend(n) for n in ("s1", "s2", "s3")}
        self.tethers = []

    def tearDown(self):
        for t in self.tethers:
            t.close()
        for b in self.backends.values():
            b.stop()
        self.redis.close()

    def replica(self, names, redis=True, timeout="100ms", admin=False, affinity="ip_hash",
                weights=None):
        port, admin_port = free_ports(2)
        servers = [(n, self.backends[n].port, {"weight": (weights or {}).get(n, 1)})
                   for n in names]
        extra = {}
        if redis:
            extra["redis"] = {"address": f"{HOST}:{self.redis.port}", "timeout": timeout,
                              "key_prefix": "it:"}
        if admin:
            extra["admin"] = {"address": f"{HOST}:{admin_port}"}
        text = tether_config(servers, port, workers=2, access_log="path: \"off\"",
                             upstream={"affinity": affinity, "balance": "round_robin"}, **extra)
        t = Tether(text, ports=[port, admin_port] if admin else [port])
        self.tethers.append(t)
        if admin:
            t.admin_port = t.ports[1]  # the port is listened on (moved if it was taken)
        if redis:
            self.wait_redis_up(t)
        return t

    def metrics(self, t) -> str:
        return http_request(HOST, t.admin_port, "GET", "/metrics").text

    def status(self, t) -> dict:
        return http_request(HOST, t.admin_port, "GET", "/status").json()

    def wait_redis_up(self, t, up=True, limit=10.0):
        if not hasattr(t, "admin_port"):
            # Without an admin port, wait for the log line.
            deadline = time.monotonic() + limit
            while "redis: connected" not in t.logs():
                if time.monotonic() > deadline:
                    self.fail(f"no redis connection: {t.logs()}")
                time.sleep(0.02)
            return
        want = "tether_redis_up 1" if up else "tether_redis_up 0"
        deadline = time.monotonic() + limit
        while want not in self.metrics(t):
            if time.monotonic() > deadline:
                self.fail(f"never saw {want}: {t.logs()}")
            time.sleep(0.05)

    def placements(self, t, ips) -> dict:
        out = {}
        for ip in ips:
            status, body = status_and_body(ip, t.port)
            self.assertEqual(status, 200, body)
            out[ip] = server_of(body)
        return out

    # -------------------------------------------------------------------------------- tests

    def test_replicas_with_different_server_lists_agree(self):
        # A knows s1 and s2; B (a reload later, say) also s3. A places every
        # client first; B must keep them where A put them (adding a server moves
        # no live client), where its own Maglev would move about a third to s3.
        a = self.replica(["s1", "s2"])
        b = self.replica(["s1", "s2", "s3"])
        control = self.replica(["s1", "s2", "s3"], redis=False)
        ips = client_ips(0, 90)
        first = self.placements(a, ips)  # A places every client and writes its binding
        own = self.placements(control, ips)
        moved = [ip for ip in ips if own[ip] != first[ip]]
        self.assertGreater(len(moved), 5, "control: without Redis the lists would not disagree")
        self.assertEqual(self.placements(b, ips), first)  # B reads A's bindings
        self.assertEqual(self.placements(a, ips), first)
        keys = self.redis.command("KEYS", "it:u:ip_hash:*")
        self.assertEqual(len(keys), len(ips))
        ttl = self.redis.command("PTTL", f"it:u:ip_hash:{ips[0]}")
        self.assertGreater(ttl, 3_000_000)  # affinity_ttl 1h

    def test_simultaneous_first_requests_on_two_replicas_land_together(self):
        # Same servers, different weights: the replicas' own placements differ. Redis may
        # take 1 s here (a sanitizer build with 160 clients at once on 2 cores took over
        # 100 ms once): what a replica places on its own when Redis is late is counted, and
        # only such a fallback may split a client.
        a = self.replica(["s1", "s2", "s3"], admin=True, timeout="1s")
        b = self.replica(["s1", "s2", "s3"], admin=True, timeout="1s", weights={"s1": 4})
        control = self.replica(["s1", "s2", "s3"], redis=False, weights={"s1": 4})
        probe = client_ips(1000, 60)
        own_a = self.placements(a, probe)
        own_b = self.placements(control, probe)
        self.assertGreater(sum(own_a[ip] != own_b[ip] for ip in probe), 5,
                           "control: the weights should make the replicas disagree")
        def fallbacks():
            return sum(int(re.search(r'tether_affinity_redis_fallbacks_total\{upstream="u"\} (\d+)',
                                     self.metrics(t)).group(1)) for t in (a, b))
        fallbacks_before = fallbacks()
        disagreements, total = [], 0
        for round_ in range(4):
            ips = client_ips(200 + round_ * 40, 40)
            results: dict = {}
            barrier = threading.Barrier(len(ips) * 2)

            def hit(t, ip, side):
                barrier.wait(10)
                results[(ip, side)] = status_and_body(ip, t.port)

            threads = [threading.Thread(target=hit, args=(t, ip, side))
                       for ip in ips for side, t in (("a", a), ("b", b))]
            for th in threads:
                th.start()
            for th in threads:
                th.join(30)
            for ip in ips:
                sa, ba = results[(ip, "a")]
                sb, bb = results[(ip, "b")]
                self.assertEqual((sa, sb), (200, 200))
                total += 1
                if server_of(ba) != server_of(bb):
                    disagreements.append((ip, server_of(ba), server_of(bb)))
        late = fallbacks() - fallbacks_before
        self.assertLess(late, total // 10, "Redis mostly answered in time")
        self.assertLessEqual(len(disagreements), late,
                             f"{disagreements}: {len(disagreements)} of {total} clients split "
                             f"with {late} Redis fallbacks\n{self.metrics(a)}\n{self.metrics(b)}")

    def test_redis_killed_under_load_and_restarted_empty(self):
        a = self.replica(["s1", "s2", "s3"], admin=True)
        b = self.replica(["s1", "s2", "s3"], admin=True)
        before = client_ips(400, 30)
        placed = self.placements(a, before)
        self.assertEqual(self.placements(b, before), placed)
        stop = threading.Event()
        failures, moved, requests = [], [], [0]
        during = client_ips(500, 30)
        during_placed: dict = {}

        def load(ips, replicas, known):
            i = 0
            while not stop.is_set():
                ip = ips[i % len(ips)]
                t = replicas[i % len(replicas)]
                i += 1
                try:
                    status, body = status_and_body(ip, t.port, timeout=5)
                except OSError as e:
                    failures.append((ip, repr(e)))
                    continue
                requests[0] += 1
                if status != 200:
                    failures.append((ip, status, body))
                    continue
                server = server_of(body)
                if known is None:
                    continue
                if known.setdefault(ip, server) != server:
                    moved.append((ip, known[ip], server))

        workers = [threading.Thread(target=load, args=(before, [a, b], dict(placed)))
                   for _ in range(3)]
        for w in workers:
            w.start()
        time.sleep(1.0)
        self.redis.kill()
        self.wait_redis_up(a, up=False)
        self.assertEqual(self.status(a)["redis"]["state"], "down")
        # New clients during the outage, on A only: placed locally.
        during_placed.update(self.placements(a, during))
        time.sleep(8.0)
        self.redis.start()  # same port, empty
        self.wait_redis_up(a)
        self.wait_redis_up(b)
        time.sleep(1.0)
        stop.set()
        for w in workers:
            w.join(30)
        self.assertEqual(failures, [])
        self.assertEqual(moved, [])
        self.assertGreater(requests[0], 100)
        # Written back: what A learnt before and during the outage is in Redis again.
        deadline = time.monotonic() + 10
        while True:
            keys = set(self.redis.command("KEYS", "it:u:ip_hash:*") or [])
            want = {f"it:u:ip_hash:{ip}" for ip in before + during}
            if want <= keys or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertEqual(want - keys, set())
        for ip in during:
            self.assertEqual(self.redis.command("GET", f"it:u:ip_hash:{ip}"), during_placed[ip])
        self.assertIn("tether_redis_reconnects_total", self.metrics(a))

    def test_slow_redis_does_not_hold_requests(self):
        a = self.replica(["s1", "s2", "s3"], admin=True, timeout="100ms")
        sleeper = threading.Thread(target=self.redis.command, args=("DEBUG", "SLEEP", "3"),
                                   kwargs={"timeout": 10})
        sleeper.start()
        time.sleep(0.2)
        slowest = 0.0
        for ip in client_ips(700, 20):  # new clients: each asks Redis first
            t0 = time.monotonic()
            status, _ = status_and_body(ip, a.port)
            slowest = max(slowest, time.monotonic() - t0)
            self.assertEqual(status, 200)
        sleeper.join(15)
        # Bounded by redis.timeout (100 ms) per command, not by the 3 s sleep.
        self.assertLess(slowest, 1.5)
        m = self.metrics(a)
        self.assertRegex(m, r'tether_redis_commands_total\{result="timeout"\} [1-9]')

    def test_drain_on_one_replica_reaches_the_other(self):
        a = self.replica(["s1", "s2", "s3"], admin=True)
        b = self.replica(["s1", "s2", "s3"], admin=True)
        time.sleep(0.3)  # subscriptions in place
        r = http_request(HOST, a.admin_port, "POST", "/upstreams/u/servers/s1/drain")
        self.assertLess(r.status, 300, r.text)
        t0 = time.monotonic()
        while True:
            servers = {s["name"]: s for s in self.status(b)["upstreams"]["u"]["servers"]}
            if servers["s1"]["draining"]:
                break
            self.assertLess(time.monotonic() - t0, 1.0, "drain did not reach replica B in 1 s")
            time.sleep(0.02)
        placed = self.placements(b, client_ips(800, 30))
        self.assertNotIn("s1", placed.values())
        late = self.replica(["s1", "s2", "s3"], admin=True)  # learns the drain from Redis
        deadline = time.monotonic() + 5
        while not {s["name"]: s for s in self.status(late)["upstreams"]["u"]["servers"]}["s1"]["draining"]:
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.05)
        http_request(HOST, b.admin_port, "POST", "/upstreams/u/servers/s1/enable")
        deadline = time.monotonic() + 2
        while {s["name"]: s for s in self.status(a)["upstreams"]["u"]["servers"]}["s1"]["draining"]:
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.02)

    def test_status_and_metrics_show_redis(self):
        a = self.replica(["s1", "s2"], admin=True)
        self.placements(a, client_ips(900, 5))
        st = self.status(a)
        self.assertEqual(st["redis"]["state"], "up")
        self.assertEqual(st["upstreams"]["u"]["bindings"], 5)
        m = self.metrics(a)
        for name in ("tether_redis_up 1", "tether_redis_command_duration_seconds_bucket",
                     "tether_redis_used_memory_bytes"):
            self.assertIn(name, m)
        self.assertRegex(m, r'tether_affinity_lookups_total\{upstream="u",mode="ip_hash",'
                            r'result="miss"\} 5')
        # A second replica finds them in Redis: redis_hit.
        b = self.replica(["s1", "s2"], admin=True)
        self.placements(b, client_ips(900, 5))
        self.assertRegex(self.metrics(b), r'tether_affinity_lookups_total\{upstream="u",'
                                          r'mode="ip_hash",result="redis_hit"\} 5')


if __name__ == "__main__":
    unittest.main()
