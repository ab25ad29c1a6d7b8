"""Failover under load and drains of servers with open tunnels (the real tether binary and
real demo backends).

- kill -9 of a backend under steady HTTP load with 100 WebSocket tunnels open: requests not
  yet sent are retried (at most the one request in flight at the kill fails), its tunnels
  end, new requests avoid it once the checks say so, and it rejoins after `rise`.
- a drain closes the server's tunnels with 1001, spread over drain.close_spread; the other
  server's tunnels stay.
- a reload that removes a server (or moves it to another address): its tunnels run on by
  default; with drain.close_removed they get 1001 spread over close_spread (measured), and
  the kept server's tunnels stay.

Bounded: 100 tunnels, a few seconds of load; every process is stopped by PID.
"""

import threading
import time
import unittest

from harness import HOST, ConnectionClosed, HttpConnection, WebSocket, http_request
from test_health import FAST_CHECKS, HealthTestCase, wait_until


class LoadThread:
    """Sequential GETs on one keep-alive connection (a new one after an error) until stopped;
    counts statuses and backends."""

    def __init__(self, port: int):
        self.port, self.counts, self.errors = port, {}, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        conn = None
        while not self._stop.is_set():
            try:
                conn = conn or HttpConnection(HOST, self.port, timeout=5)
                r = conn.request("GET", "/")
                key = r.header("X-Backend") if r.status == 200 else r.status
                if r.status != 200:
                    self.errors.append((time.monotonic(), r.status))
                if (r.header("Connection") or "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, ConnectionClosed, ValueError) as e:
                key = type(e).__name__
                self.errors.append((time.monotonic(), key))
                if conn:
                    conn.close()
                conn = None
            self.counts[key] = self.counts.get(key, 0) + 1
        if conn:
            conn.close()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)


def open_tunnels(port: int, n: int) -> dict:
    """n WebSockets through tether: {backend name: [WebSocket, ...]}."""
    out = {}
    for _ in range(n):
        ws = WebSocket.connect(HOST, port, "/chat")
        ws.send_text("whoami")
        out.setdefault(ws.recv_text(), []).append(ws)
    return out


def wait_closed(ws: WebSocket, timeout: float) -> float:
    """Waits until the tunnel ends (close frame or TCP close); returns the time it did."""
    try:
        while True:
            opcode, _ = ws.recv(timeout)
            if opcode == WebSocket.CLOSE:
                break
    except (ConnectionClosed, OSError):
        pass
    return time.monotonic()


class KillUnderLoad(HealthTestCase):
    def test_kill_9_under_load_with_100_tunnels(self):
        b1, b2 = self.backends("b1", "b2")
        checks = FAST_CHECKS.replace("interval: 100ms", "interval: 200ms")
        self.tether([b1, b2], upstream=checks + "retries: 1\nkeepalive: 8\n")
        tunnels = open_tunnels(self.port, 100)
        self.assertEqual(sorted(len(v) for v in tunnels.values()), [50, 50])
        for group in tunnels.values():
            for ws in group:
                self.addCleanup(ws.abort)
        with LoadThread(self.port) as load:
            wait_until(lambda: load.counts.get("b1", 0) > 50, 10, what="load on b1")
            port = b1.port
            killed = time.monotonic()
            b1.kill()
            # b1's tunnels end; b2's carry on.
            for ws in tunnels["b1"]:
                self.assertLess(wait_closed(ws, 5) - killed, 5)
            self.wait_state("b1", "down", timeout=3)
            served_b1 = load.counts.get("b1", 0)
            time.sleep(0.5)
            self.assertEqual(load.counts.get("b1", 0), served_b1, "b1 served after its kill")
            # Restarted: back after rise (2 checks at 200 ms).
            self.backend("b1", port=port)
            self.wait_state("b1", "up", timeout=3)
            wait_until(lambda: load.counts.get("b1", 0) > served_b1 + 20, 10,
                       what="load on b1 again")
        # The request in flight at the kill may fail (it was sent); any later one was retried.
        self.assertLessEqual(len(load.errors), 1, load.errors)
        for ws in tunnels["b2"]:
            ws.send_text("still here")
            self.assertEqual(ws.recv_text(), "still here")


class DrainTunnels(HealthTestCase):
    def test_drain_closes_its_tunnels_spread_over_close_spread(self):
        s1, s2 = self.backends("s1", "s2")
        self.tether([s1, s2], workers=2, upstream="drain:\n  close_spread: 1500ms\n")
        tunnels = open_tunnels(self.port, 24)
        for group in tunnels.values():
            for ws in group:
                self.addCleanup(ws.abort)
        self.assertEqual(set(tunnels), {"s1", "s2"})
        closed = {}

        def watch(i, ws):
            closed[i] = (wait_closed(ws, 6), ws.close_code)

        threads = [threading.Thread(target=watch, args=(i, ws), daemon=True)
                   for i, ws in enumerate(tunnels["s1"])]
        start = time.monotonic()
        self.assertEqual(self.admin("POST", "/upstreams/u/servers/s1/drain").status, 200)
        for t in threads:
            t.start()
        for t in threads:
            t.join(8)
        self.assertEqual(len(closed), len(tunnels["s1"]))
        codes = {code for _, code in closed.values()}
        self.assertEqual(codes, {1001})
        times = sorted(t - start for t, _ in closed.values())
        self.assertLess(times[-1], 1.5 + 1.0)  # within the spread (+ tick and slack)
        self.assertGreater(times[-1] - times[0], 0.4, f"not spread: {times}")
        for ws in tunnels["s2"]:  # the other server's tunnels stay
            ws.send_text("ping")
            self.assertEqual(ws.recv_text(), "ping")
            ws.close()
        self.assertEqual(self.who(6), {"s2": 6})
        wait_until(lambda: next(s for s in self.status()["upstreams"]["u"]["servers"]
                                if s["name"] == "s1")["tunnels"] == 0, 3, what="no tunnel left")


class ReloadRemovedTunnels(HealthTestCase):
    """SIGHUP removing a server with tunnels open: they run on by default; with
    drain.close_removed they get 1001 spread over drain.close_spread."""

    SPREAD = 1.5

    def open_and_remove_s1(self, close_removed: bool):
        s1, s2, s3 = self.backends("s1", "s2", "s3")
        drain = {"close_spread": "1500ms", "close_removed": close_removed}
        self.tether([s1, s2], workers=2, upstream={"drain": drain})
        tunnels = open_tunnels(self.port, 24)
        for group in tunnels.values():
            for ws in group:
                self.addCleanup(ws.abort)
        self.assertEqual(set(tunnels), {"s1", "s2"})
        start = time.monotonic()
        self.t.reload(self.config(servers=[("s2", s2.port), ("s3", s3.port)]))
        wait_until(lambda: self.status()["config_generation"] == 2, 5, what="reload")
        return tunnels, start

    def test_removed_servers_tunnels_survive_a_reload_by_default(self):
        tunnels, start = self.open_and_remove_s1(close_removed=False)
        # Past the whole window a close would have used: every tunnel still echoes.
        time.sleep(max(0.0, start + self.SPREAD + 0.5 - time.monotonic()))
        for name, group in tunnels.items():
            for ws in group:
                ws.send_text("after reload")
                self.assertEqual(ws.recv_text(), "after reload")
                ws.send_text("whoami")
                self.assertEqual(ws.recv_text(), name)
        self.assertNotIn("closing the tunnels to removed server", self.t.logs())

    def test_close_removed_closes_them_with_1001_spread_and_keeps_the_others(self):
        closed = {}

        def watch(i, ws):
            closed[i] = (wait_closed(ws, 6), ws.close_code)

        tunnels, start = self.open_and_remove_s1(close_removed=True)
        threads = [threading.Thread(target=watch, args=(i, ws), daemon=True)
                   for i, ws in enumerate(tunnels["s1"])]
        for t in threads:
            t.start()
        for t in threads:
            t.join(8)
        self.assertEqual(len(closed), len(tunnels["s1"]))
        self.assertEqual({code for _, code in closed.values()}, {1001})
        times = sorted(t - start for t, _ in closed.values())
        self.assertLess(times[-1], self.SPREAD + 1.0)  # within the spread (+ tick and slack)
        self.assertGreater(times[-1] - times[0], 0.4, f"not spread: {times}")
        print(f"\n{len(times)} tunnels of a removed server closed over a {self.SPREAD} s "
              f"spread: first {times[0]:.2f} s, median {times[len(times) // 2]:.2f} s, "
              f"last {times[-1]:.2f} s after SIGHUP")
        for ws in tunnels["s2"]:  # the kept server's tunnels are untouched
            ws.send_text("ping")
            self.assertEqual(ws.recv_text(), "ping")
            ws.send_text("whoami")
            self.assertEqual(ws.recv_text(), "s2")
        self.assertIn("closing the tunnels to removed server 's1'", self.t.logs())
        wait_until(lambda: self.metric("tether_websocket_tunnels_active", upstream="u",
                                       server="s2") == len(tunnels["s2"]), 3,
                   what="s2's tunnels all counted")

    def test_close_removed_counts_a_server_moved_to_another_address_as_removed(self):
        s1, s2, s3 = self.backends("s1", "s2", "s3")
        self.tether([s1, s2], workers=1,
                    upstream={"drain": {"close_spread": "300ms", "close_removed": True}})
        tunnels = open_tunnels(self.port, 6)
        for group in tunnels.values():
            for ws in group:
                self.addCleanup(ws.abort)
        # The name s1 now stands for the process at s3's address: the tunnels to the old
        # address end; those to s2 (same name, same address) stay.
        self.t.reload(self.config(servers=[("s1", s3.port), ("s2", s2.port)]))
        for ws in tunnels["s1"]:
            wait_closed(ws, 5)
            self.assertEqual(ws.close_code, 1001)
        for ws in tunnels["s2"]:
            ws.send_text("whoami")
            self.assertEqual(ws.recv_text(), "s2")
        self.assertEqual(self.who(4), {"s3": 2, "s2": 2})  # s3's backend answers as s3


if __name__ == "__main__":
    unittest.main()
