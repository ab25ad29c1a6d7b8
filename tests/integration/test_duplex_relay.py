"""Both directions of an exchange at once: the request body keeps flowing upstream while the
response is relayed back (src/http/duplex.hpp).

A backend that streams its answer while still reading the upload (the demo backend's /echo)
needs a proxy that reads the response before the request body is all sent: a 64 MB echo must
complete with tether's RSS flat, and small pieces must go on one by one. The rules around it:
a stale kept-alive connection is retried only while tether holds the whole request;
a backend that answers early (413 before reading the body) has its answer relayed and the
client connection closed afterwards; a client-side failure is answered 413 only while no
response was started, and cuts the response otherwise; timeouts.upstream_response counts from
the end of the request, never during a slow upload.

Real tether and demo-backend processes on 127.0.0.1, free ports, stopped by PID.
"""

import socket
import time
import unittest

from harness import (HOST, ConnectionClosed, HttpConnection, _Reader, build_request,
                     pattern_bytes, read_response)
from test_proxy_core import ProxyTestCase, RssSampler, streamed_body

MB = 1 << 20
ECHO = 64 * MB


class StreamedEcho(ProxyTestCase):
    def _echo(self, chunked: bool):
        b, = self.backends("b1")
        t = self.tether([b], limits={"max_body_size": "100m"})
        data, pieces, headers = streamed_body(ECHO, chunked)
        with HttpConnection(HOST, t.port, timeout=60) as conn, RssSampler(t) as rss:
            resp = conn.request("POST", "/echo", body=pieces, headers=headers)
            self.assertEqual(resp.status, 200, t.logs())
            self.assertEqual(resp.framing, "chunked" if chunked else "length")
            self.assertEqual(len(resp.body), ECHO)
            self.assertTrue(resp.body == data, "echoed body differs")
            # both directions ended cleanly: the client connection is kept alive
            self.assertEqual(conn.request("GET", "/healthz").body, b"ok\n")
        # two relay buffers and socket buffers, never the body
        self.assertLess(rss.growth_kb, 16 * 1024, f"RSS grew {rss.growth_kb} KiB")

    def test_64mb_echo_content_length_rss_flat(self):
        self._echo(chunked=False)

    def test_64mb_echo_chunked_rss_flat(self):
        self._echo(chunked=True)

    def test_pieces_go_on_one_by_one(self):
        """Each chunk comes back before the next is sent: nothing waits for a full buffer."""
        b, = self.backends("b1")
        t = self.tether([b])
        with socket.create_connection((HOST, t.port), timeout=10) as sock:
            sock.sendall(build_request("POST", "/echo", {"Content-Type": "x/y"}, None,
                                       f"{HOST}:{t.port}", chunked=True))
            reader = _Reader(sock)
            deadline = time.monotonic() + 10
            head = reader.read_until(b"\r\n\r\n", deadline)
            self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
            self.assertIn(b"transfer-encoding: chunked", head.lower())
            for i in range(20):
                piece = b"piece %d " % i * (i + 1)
                sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
                echoed = b""
                while len(echoed) < len(piece):
                    size = int(reader.read_until(b"\r\n", deadline), 16)
                    echoed += reader.read_exact(size, deadline)
                    self.assertEqual(reader.read_exact(2, deadline), b"\r\n")
                self.assertEqual(echoed, piece)
            sock.sendall(b"0\r\n\r\n")
            self.assertEqual(reader.read_until(b"\r\n\r\n", deadline), b"0\r\n\r\n")


class EarlyAnswers(ProxyTestCase):
    def test_backend_answers_413_while_client_uploads(self):
        """The backend refuses an 8 MB body before reading it: the client gets the 413, then
        the connection is closed (its body was never all read), and tether goes on serving."""
        b, = self.backends("b1")
        t = self.tether([b], limits={"max_body_size": "100m"})
        size = 8 * MB
        data = pattern_bytes(size)
        pieces = (data[i:i + 64 * 1024] for i in range(0, size, 64 * 1024))
        with HttpConnection(HOST, t.port, timeout=20) as conn:
            resp = conn.request("POST", "/", body=pieces, headers={"Content-Length": str(size)})
            self.assertEqual(resp.status, 413, f"{resp!r} {resp.text!r}\n{t.logs()}")
            self.assertEqual(resp.body, b"body too large\n")
            self.assertTrue(conn.peer_closed(5.0), "client connection reused after an early "
                                                    "answer to a body not all read")
        self.assertEqual(self.get(t, "/healthz").body, b"ok\n")

    def test_client_body_over_limit_before_any_response_413(self):
        """A chunked body passes max_body_size while the backend (/sink) has not answered:
        tether answers 413 itself."""
        b, = self.backends("b1")
        t = self.tether([b], limits={"max_body_size": "1m"})
        pieces = [pattern_bytes(64 * 1024)] * 40
        with HttpConnection(HOST, t.port, timeout=20) as conn:
            resp = conn.request("POST", "/sink", body=iter(pieces))
        self.assert_error(resp, 413, t)

    def test_client_body_over_limit_after_response_began_cuts_it(self):
        """The same failure once the echo streams back: the response is cut (a status can
        no longer be sent), never followed by a 413."""
        b, = self.backends("b1")
        t = self.tether([b], limits={"max_body_size": "1m"})
        with socket.create_connection((HOST, t.port), timeout=10) as sock:
            sock.sendall(build_request("POST", "/echo", None, None, f"{HOST}:{t.port}",
                                       chunked=True) + b"5\r\nfirst\r\n")
            reader = _Reader(sock)
            deadline = time.monotonic() + 10
            self.assertTrue(reader.read_until(b"\r\n\r\n", deadline).startswith(b"HTTP/1.1 200"))
            self.assertEqual(reader.read_until(b"\r\nfirst\r\n", deadline), b"5\r\nfirst\r\n")
            piece = pattern_bytes(64 * 1024)
            try:
                for _ in range(40):  # 2.5 MB over max_body_size
                    sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
            except OSError:
                pass  # tether closed: expected
            with self.assertRaises((ConnectionClosed, ConnectionResetError)):
                while True:  # echoed chunks until the cut; a last chunk or a head would fail
                    size = int(reader.read_until(b"\r\n", deadline), 16)
                    self.assertGreater(size, 0, "the response was completed")
                    self.assertEqual(reader.read_exact(size + 2, deadline)[-2:], b"\r\n")
        self.assertEqual(self.get(t, "/healthz").body, b"ok\n")


class StaleRetry(ProxyTestCase):
    """A kept-alive backend connection that closes without answering (the demo backend's
    /close stands for one the backend had just closed) is retried on a fresh one only
    while tether still holds the whole request."""

    def _attempts(self, request: bytes) -> int:
        b, = self.backends("b1")
        t = self.tether([b], workers=1)
        with HttpConnection(HOST, t.port) as conn:
            self.assertEqual(conn.request("GET", "/healthz").body, b"ok\n")  # pooled now
            before = b.stats()["requests"]
            conn.send(request)
            resp = conn.read_response()
        self.assert_error(resp, 502, t)
        return b.stats()["requests"] - before - 1  # less the second /stats

    def test_body_read_with_the_head_is_sent_again(self):
        self.assertEqual(self._attempts(build_request("POST", "/close", None, b"x" * 1000)), 2)

    def test_body_partly_relayed_is_not(self):
        head = build_request("POST", "/close", None, None, chunked=True)
        self.assertEqual(self._attempts(head + b"3e8\r\n" + b"x" * 1000 + b"\r\n"), 1)

    def test_body_not_arrived_yet_is(self):
        head = build_request("POST", "/close", {"Content-Length": "1000"})
        self.assertEqual(self._attempts(head), 2)


class ResponseDeadline(ProxyTestCase):
    def _slow_body(self, pieces: int, pause: float):
        for i in range(pieces):
            if i:
                time.sleep(pause)
            yield b"slow piece %d\n" % i

    def test_slow_upload_longer_than_upstream_response(self):
        b, = self.backends("b1")
        t = self.tether([b], timeouts={"upstream_response": "1s"})
        with HttpConnection(HOST, t.port, timeout=20) as conn:
            resp = conn.request("POST", "/sink", body=self._slow_body(6, 0.4))
        self.assertEqual(resp.status, 200, f"{resp!r} {resp.text!r}\n{t.logs()}")
        self.assertEqual(resp.body, b"%d\n" % sum(len(b"slow piece %d\n" % i) for i in range(6)))

    def test_upstream_response_counts_from_end_of_request_504(self):
        b, = self.backends("b1")
        t = self.tether([b], timeouts={"upstream_response": "1s"})
        start = time.monotonic()
        with HttpConnection(HOST, t.port, timeout=20) as conn:
            resp = conn.request("POST", "/sleep?ms=4000", body=self._slow_body(4, 0.5))
        self.assert_error(resp, 504, t)
        # 1.5 s of upload, then the 1 s deadline
        self.assertGreaterEqual(time.monotonic() - start, 2.4)


if __name__ == "__main__":
    unittest.main()
