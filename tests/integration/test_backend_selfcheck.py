"""Self-check of the harness against tether-demo-backend alone (no tether).

Proves both sides that every other integration test stands on: each demo endpoint, keep-alive
and pipelining, streaming /echo of 50 MB, the three /bytes framings, WebSocket echo (1 MB,
fragmented, whoami, hello=1, ping, close), and the backend's process contract (one
`listening` line, SIGTERM exits 0 at once, --threads).
"""

import resource
import signal
import socket
import time
import unittest

from harness import (HOST, Backend, ConnectionClosed, HttpConnection, WebSocket, _Reader,
                     build_request, http_request, pattern_bytes, read_response, send_raw,
                     tether_config)


class BackendSelfCheck(unittest.TestCase):
    backend: Backend

    @classmethod
    def setUpClass(cls):
        cls.backend = Backend("b1")

    @classmethod
    def tearDownClass(cls):
        code = cls.backend.stop()
        cls.backend.__exit__(None, None, None)
        assert code == 0, f"backend exited with {code}"

    def get(self, path, method="GET", **kw):
        return http_request(HOST, self.backend.port, method, path, **kw)

    def assert_ok(self, resp, body: bytes):
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.header("X-Backend"), "b1")
        self.assertEqual(resp.body, body)

    def test_healthz(self):
        self.assert_ok(self.get("/healthz"), b"ok\n")

    def test_demo_response_any_method_and_path(self):
        for method, path in (("GET", "/"), ("POST", "/some/where?x=1"), ("DELETE", "/echo")):
            self.assert_ok(self.get(path, method), b"hello from b1\n")

    def test_head_has_headers_only_and_keeps_connection(self):
        with HttpConnection(HOST, self.backend.port) as conn:
            resp = conn.request("HEAD", "/healthz")
            self.assertEqual(resp.status, 200)
            self.assertEqual(resp.header("Content-Length"), "3")
            self.assertEqual(resp.body, b"")
            resp = conn.request("HEAD", "/bytes?n=1000&mode=chunked")
            self.assertEqual(resp.header("Transfer-Encoding"), "chunked")
            self.assert_ok(conn.request("GET", "/healthz"), b"ok\n")

    def test_stats_counts_connections_requests_websockets(self):
        before = self.backend.stats()
        self.assertEqual(before["name"], "b1")
        with HttpConnection(HOST, self.backend.port) as conn:
            for _ in range(3):
                conn.request("GET", "/")
        with WebSocket.connect(HOST, self.backend.port, "/ws"):
            pass
        after = self.backend.stats()
        self.assertEqual(after["connections"] - before["connections"], 3)  # conn, ws, stats
        self.assertEqual(after["requests"] - before["requests"], 5)
        self.assertEqual(after["websockets"] - before["websockets"], 1)

    def test_headers_echoes_request_line_and_headers_in_order_and_case(self):
        raw = (b"GET /headers?a=1 HTTP/1.1\r\nHost: x\r\nX-Zed: 1\r\nlower-case: two\r\n"
               b"X-Zed: 3\r\n\r\n")
        resp = send_raw(HOST, self.backend.port, raw)
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.text, "GET /headers?a=1 HTTP/1.1\nHost: x\nX-Zed: 1\n"
                                    "lower-case: two\nX-Zed: 3\n")

    def test_echo_content_length(self):
        resp = self.get("/echo", "POST", body=b"hello", headers={"Content-Type": "x/y"})
        self.assert_ok(resp, b"hello")
        self.assertEqual(resp.framing, "length")
        self.assertEqual(resp.header("Content-Type"), "x/y")

    def test_echo_chunked_request_gets_chunked_response(self):
        pieces = [bytes([65 + i % 26]) * (10_000 + i) for i in range(200)]
        resp = self.get("/echo", "PUT", body=iter(pieces))
        self.assert_ok(resp, b"".join(pieces))
        self.assertEqual(resp.framing, "chunked")

    def test_echo_50mb_streams(self):
        body = pattern_bytes(50 * 1024 * 1024)
        resp = self.get("/echo", "POST", body=body, timeout=60)
        self.assertEqual(resp.framing, "length")
        self.assertTrue(resp.body == body, "50 MB echo differs")

    def test_echo_answers_before_body_is_complete(self):
        with HttpConnection(HOST, self.backend.port) as conn:
            conn.send(build_request("POST", "/echo", {"Content-Length": "10"}) + b"abcde")
            deadline = time.monotonic() + 5
            head = conn.reader.read_until(b"\r\n\r\n", deadline)
            self.assertIn(b"Content-Length: 10", head)
            self.assertEqual(conn.reader.read_exact(5, deadline), b"abcde")
            conn.send(b"fghij")
            self.assertEqual(conn.reader.read_exact(5, deadline), b"fghij")

    def test_echo_expect_100_continue(self):
        resp = self.get("/echo", "POST", body=b"x" * 1000, headers={"Expect": "100-continue"})
        self.assertEqual([r.status for r in resp.interim], [100])
        self.assert_ok(resp, b"x" * 1000)

    def test_bytes_length_chunked_close(self):
        n = 200_000 + 7
        for mode, framing in (("length", "length"), ("chunked", "chunked"), ("close", "close")):
            with self.subTest(mode=mode):
                resp = self.get(f"/bytes?n={n}&mode={mode}")
                self.assert_ok(resp, pattern_bytes(n))
                self.assertEqual(resp.framing, framing)
        self.assertEqual(self.get("/bytes?n=5").body, b"01234")
        self.assertEqual(self.get("/bytes?n=0&mode=chunked").body, b"")
        self.assertEqual(self.get("/bytes?n=1&mode=close").header("Connection"), "close")

    def test_sleep_does_not_block_other_connections(self):
        with HttpConnection(HOST, self.backend.port) as slow:
            start = time.monotonic()
            slow.send_request("GET", "/sleep?ms=800")
            self.assert_ok(self.get("/healthz"), b"ok\n")
            self.assertLess(time.monotonic() - start, 0.5)
            self.assert_ok(slow.read_response(), b"slept 800\n")
            self.assertGreaterEqual(time.monotonic() - start, 0.79)

    def test_status(self):
        for code in (201, 404, 500, 503):
            resp = self.get(f"/status?code={code}")
            self.assertEqual((resp.status, resp.body), (code, b"status %d\n" % code))
            self.assertEqual(resp.header("X-Backend"), "b1")
        resp = self.get("/status?code=204")
        self.assertEqual((resp.status, resp.body), (204, b""))
        self.assertEqual(self.get("/status?code=abc").status, 400)

    def test_close_and_reset_answer_nothing(self):
        with HttpConnection(HOST, self.backend.port) as conn:
            with self.assertRaises(ConnectionClosed):
                conn.request("GET", "/close")
        with HttpConnection(HOST, self.backend.port) as conn:
            with self.assertRaises(ConnectionResetError):
                conn.request("GET", "/reset")

    def test_keepalive_pipelining_in_order(self):
        before = self.backend.stats()["connections"]
        with HttpConnection(HOST, self.backend.port) as conn:
            conn.send_request("GET", "/sleep?ms=100")
            conn.send_request("GET", "/bytes?n=100000&mode=chunked")
            conn.send_request("HEAD", "/")
            conn.send_request("POST", "/echo", body=b"pipelined")
            conn.send_request("GET", "/status?code=500", body=b"ignored body")
            conn.send_request("GET", "/healthz")
            bodies = [conn.read_response() for _ in range(6)]
            self.assertEqual([r.status for r in bodies], [200, 200, 200, 200, 500, 200])
            self.assertEqual(bodies[0].body, b"slept 100\n")
            self.assertEqual(bodies[1].body, pattern_bytes(100000))
            self.assertEqual(bodies[2].body, b"")
            self.assertEqual(bodies[3].body, b"pipelined")
            self.assertEqual(bodies[5].body, b"ok\n")
        self.assertEqual(self.backend.stats()["connections"] - before, 2)  # conn + stats

    def test_connection_close_request_is_honoured(self):
        with HttpConnection(HOST, self.backend.port) as conn:
            conn.request("GET", "/", headers={"Connection": "close"})
            self.assertTrue(conn.peer_closed(2.0))

    def test_limits(self):
        resp = send_raw(HOST, self.backend.port,
                        b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n")
        self.assertEqual(resp.status, 431)
        self.assertEqual(self.get("/", "POST", body=b"x" * (2 << 20)).status, 413)
        self.assertEqual(send_raw(HOST, self.backend.port, b"NOT HTTP\r\n\r\n").status, 400)

    def test_websocket_echo(self):
        with WebSocket.connect(HOST, self.backend.port, "/any/path") as ws:
            self.assertEqual(ws.response.header("X-Backend"), "b1")
            ws.send_text("héllo")
            self.assertEqual(ws.recv(), (WebSocket.TEXT, "héllo".encode()))
            big = pattern_bytes(1 << 20)
            ws.send_binary(big)
            self.assertEqual(ws.recv(), (WebSocket.BINARY, big))
            ws.send_text("whoami")
            self.assertEqual(ws.recv_text(), "b1")
            ws.send_frame(WebSocket.TEXT, b"frag", fin=False)
            ws.send_frame(WebSocket.CONT, b"mented", fin=True)
            self.assertEqual(ws.recv_text(), "fragmented")
            ws.ping(b"p")
            ws.send_text("after ping")
            self.assertEqual(ws.recv_text(), "after ping")
            self.assertEqual(ws.pongs, [b"p"])
            self.assertEqual(ws.close(1000), 1000)

    def test_websocket_large_message_and_hello(self):
        with WebSocket.connect(HOST, self.backend.port, "/?x=2&hello=1") as ws:
            self.assertEqual(ws.recv_text(), "hello from b1")
            big = pattern_bytes(15 << 20)
            ws.send_binary(big)
            self.assertEqual(ws.recv(timeout=30), (WebSocket.BINARY, big))

    def test_websocket_frame_sent_with_upgrade(self):
        key = "dGhlIHNhbXBsZSBub25jZQ=="
        head = build_request("GET", "/", [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                          ("Sec-WebSocket-Key", key),
                                          ("Sec-WebSocket-Version", "13")])
        frame = bytes([0x81, 0x86]) + b"\0\0\0\0" + b"whoami"  # zero mask
        with socket.create_connection((HOST, self.backend.port), timeout=5) as sock:
            sock.sendall(head + frame)
            reader = _Reader(sock)
            self.assertEqual(read_response(reader).status, 101)
            ws = WebSocket(sock, reader, None, 5)
            self.assertEqual(ws.recv_text(), "b1")

    def test_websocket_peer_close_code(self):
        with WebSocket.connect(HOST, self.backend.port) as ws:
            self.assertEqual(ws.close(4001, "bye"), 4001)  # beast echoes the code

    def test_many_idle_websockets_are_cheap(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        count = min(1000, hard // 2 - 100)
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 2 * count + 200)), hard))
        rss_before = _rss_kb(self.backend.pid)
        sockets = [WebSocket.connect(HOST, self.backend.port) for _ in range(count)]
        try:
            growth = _rss_kb(self.backend.pid) - rss_before
            self.assertLess(growth / count, 40, f"{growth} KiB for {count} sessions")
            sockets[-1].send_text("whoami")
            self.assertEqual(sockets[-1].recv_text(), "b1")
        finally:
            for ws in sockets:
                ws.abort()


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


class BackendProcessCheck(unittest.TestCase):
    def test_sigterm_exits_zero_promptly_with_requests_in_flight(self):
        backend = Backend("b2")
        with backend, HttpConnection(HOST, backend.port) as conn:
            conn.send_request("GET", "/sleep?ms=10000")
            time.sleep(0.1)
            start = time.monotonic()
            backend.proc.send_signal(signal.SIGTERM)
            self.assertEqual(backend.proc.wait(3), 0)
            self.assertLess(time.monotonic() - start, 1.0)

    def test_threads_share_one_port_and_counters(self):
        with Backend("b3", threads=2) as backend:
            conns = [HttpConnection(HOST, backend.port) for _ in range(8)]
            for conn in conns:
                self.assertEqual(conn.request("GET", "/").body, b"hello from b3\n")
                conn.close()
            stats = backend.stats()
            self.assertEqual((stats["connections"], stats["requests"]), (9, 9))

    def test_tether_config_renders_valid_yaml(self):
        text = tether_config([("s1", 3001), ("s2", "127.0.0.1:3002", {"weight": 2})], 8080,
                             timeouts="idle: 2s\nconnect: 1s", limits={"max_body_size": "2m"},
                             upstream="affinity: cookie\nbalance: least_conn")
        self.assertIn("admin: off\n", text)
        self.assertIn("  - address: 127.0.0.1:8080\n    upstream: u\n", text)
        self.assertIn("    balance: least_conn\n", text)
        self.assertNotIn("round_robin", text)
        self.assertIn("timeouts:\n  idle: 2s\n  connect: 1s\n", text)
        self.assertIn("        weight: 2\n", text)


if __name__ == "__main__":
    unittest.main()
