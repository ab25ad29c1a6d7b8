"""Lifecycle at scale: 1,000 WebSocket tunnels through the real tether binary (2 workers) to
real demo backends.

- SIGHUP that removes a server, adds one and re-weights another while the tunnels are open:
  every tunnel still echoes afterwards (none dropped, also those to the removed server).
- SIGTERM: every tunnel gets a 1001 close frame, their close times spread over
  drain.close_spread (measured: not all at once), and the process exits 0 within
  timeouts.shutdown.

Bounded: 1,000 tunnels (the test raises its own descriptor limit if it must), a few seconds.
"""

import resource
import select
import signal
import time
import unittest

from harness import HOST, WebSocket
from test_health import HealthTestCase, wait_until

N = 1000


def raise_fd_limit(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))


class ManyTunnels(HealthTestCase):
    def setUp(self):
        raise_fd_limit(N + 500)

    def open(self, n: int) -> dict:
        """n tunnels: {WebSocket: backend name}."""
        out = {}
        for _ in range(n):
            ws = WebSocket.connect(HOST, self.port, "/chat")
            self.addCleanup(ws.abort)
            ws.send_text("whoami")
            out[ws] = None
        for ws in out:
            out[ws] = ws.recv_text()
        return out

    def test_sighup_adding_and_removing_servers_drops_no_tunnel(self):
        s1, s2, s3 = self.backends("s1", "s2", "s3")
        self.tether([s1, s2], workers=2)
        tunnels = self.open(N)
        self.assertEqual(set(tunnels.values()), {"s1", "s2"})
        self.t.reload(self.config(servers=[("s2", s2.port, {"weight": 2}), ("s3", s3.port)]))
        wait_until(lambda: self.status()["config_generation"] == 2, 5, what="reload")
        self.assertEqual(set(self.who(12)), {"s2", "s3"})
        for ws in tunnels:  # all at once, then every answer
            ws.send_text("after reload")
        for ws, name in tunnels.items():
            self.assertEqual(ws.recv_text(), "after reload")
        for ws in list(tunnels)[:20]:
            ws.send_text("whoami")
            self.assertEqual(ws.recv_text(), tunnels[ws])  # still on its own server
        self.assertIn("reloaded", self.t.logs())

    def test_sigterm_spreads_1001_closes_over_close_spread_and_exits_in_time(self):
        s1, s2 = self.backends("s1", "s2")
        spread, shutdown = 2.0, 6.0
        self.tether([s1, s2], workers=2, upstream="drain:\n  close_spread: 2s\n",
                    timeouts={"shutdown": "6s"})
        tunnels = list(self.open(N))
        by_fd = {ws.sock.fileno(): ws for ws in tunnels}
        closed = {}
        start = time.monotonic()
        self.t.signal(signal.SIGTERM)
        deadline = start + shutdown + 2
        while len(closed) < N and time.monotonic() < deadline:
            ready, _, _ = select.select([fd for fd in by_fd if fd not in closed], [], [], 0.5)
            for fd in ready:
                ws = by_fd[fd]
                opcode, _ = ws.recv(2)
                if opcode == WebSocket.CLOSE:
                    closed[fd] = (time.monotonic() - start, ws.close_code)
        self.assertEqual(len(closed), N, "tunnels without a close frame")
        self.assertEqual({code for _, code in closed.values()}, {1001})
        times = sorted(t for t, _ in closed.values())
        p10, p50, p90 = (times[int(N * q)] for q in (0.1, 0.5, 0.9))
        # Uniform over 2 s would give 0.2 / 1.0 / 1.8 s; all at once would give p10 == p90.
        self.assertLess(p10, 0.6, times[:5])
        self.assertGreater(p90, 1.2, times[-5:])
        self.assertGreater(p90 - p10, 0.8)
        self.assertLess(times[-1], spread + 1.0)  # within the window (+ tick and slack)
        code = self.t.wait(shutdown + 2 - (time.monotonic() - start))
        self.assertEqual(code, 0)
        self.assertLess(time.monotonic() - start, shutdown + 1)
        print(f"\n1001 close times over a {spread:.0f} s spread: p10 {p10:.2f} s, "
              f"p50 {p50:.2f} s, p90 {p90:.2f} s, last {times[-1]:.2f} s")


if __name__ == "__main__":
    unittest.main()
