"""Keep-alive reads that wait for the next message without trying a recv first (docs/benchmarks.md,
"Third pass"): the ends of streams that such a wait cannot see by itself are still seen.

- A client that half-closes with its last request (`nc -N`): its end of stream came with the
  request and raises no new event; tether must still close the connection after the answer,
  long before timeouts.idle (the worker's tick looks once).
- A client that half-closes after several keep-alive requests on one connection.
- A kept-alive backend connection whose server closed it with its last answer (no
  `Connection: close`): the next request on it is answered all the same (the reset of the
  write wakes the read; the request goes again on a fresh connection).
- A close-delimited response body (the backend's end of stream ends it) after kept-alive use.
- Heads and bodies that come in pieces, from the client and from the backend, on kept-alive
  connections: the reads that find a whole head or body in the buffer take no coroutine, the
  others go on reading where the buffer left off (http_read.hpp settled_by_buffer).
- One kept-alive client connection whose requests take the paths that wait for nothing and
  those that wait in turn (forward.cpp open_upstream, respond.cpp respond): a new backend
  connection then pooled ones, answers here whole then streamed ones, and the backend
  connection given back after either, so one backend connection serves them all.
- The wait for a request (no parser, serve_request): timeouts.client_header before the first
  request of a connection, timeouts.idle between requests.
- Many small answers to pipelined requests that the client reads only later: tether's writes
  find the socket full and finish later (relay_whole.hpp finish_whole); every answer arrives
  whole and in order.

Every test starts its own backends and tether on free ports and stops them by PID; every wait
is bounded.
"""

import socket
import threading
import time
import unittest

from harness import (HOST, Backend, HttpConnection, Tether, _Reader, build_request, free_port,
                     read_response, tether_config)


class _ThreadServer:
    """A listening socket on a free loopback port served by a thread of its own (`_serve`,
    polling its stop flag every 0.2 s); close() stops the thread and the socket."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind((HOST, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        raise NotImplementedError

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


class OneShotKeepAliveServer(_ThreadServer):
    """A backend that answers each connection's first request with a keep-alive response
    (no `Connection: close`) and closes the connection right after it: the end of stream comes
    with the answer. Counts the connections it accepted."""

    def __init__(self):
        self.connections = 0
        super().__init__()

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            with conn:
                conn.settimeout(5)
                data = b""
                try:
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                    if data:
                        body = f"conn {self.connections}\n".encode()
                        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: " +
                                     str(len(body)).encode() + b"\r\n\r\n" + body)
                except OSError:
                    pass


class PiecewiseServer(_ThreadServer):
    """A keep-alive backend that answers every request (its body echoed) in three pieces, 30 ms
    apart: the head cut inside a field, then the rest of the head with 2 body bytes, then the
    rest of the body; with `interim`, a 103 Early Hints answer comes first, on its own."""

    def __init__(self, interim: bool = False):
        self.interim = interim
        super().__init__()

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._answer_all, args=(conn,), daemon=True).start()

    def _answer_all(self, conn):
        with conn:
            conn.settimeout(5)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            data = b""
            try:
                while not self._stop.is_set():
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(4096)
                        if not chunk:
                            return
                        data += chunk
                    head, data = data.split(b"\r\n\r\n", 1)
                    length = 0
                    for line in head.split(b"\r\n")[1:]:
                        name, _, value = line.partition(b":")
                        if name.strip().lower() == b"content-length":
                            length = int(value)
                    while len(data) < length:
                        chunk = conn.recv(4096)
                        if not chunk:
                            return
                        data += chunk
                    body, data = b"echo:" + data[:length], data[length:]
                    pieces = [b"HTTP/1.1 200 OK\r\nX-Pie",
                              b"ces: 3\r\nContent-Length: " + str(len(body)).encode() +
                              b"\r\n\r\n" + body[:2], body[2:]]
                    if self.interim:
                        pieces.insert(0, b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n")
                    for piece in pieces:
                        conn.sendall(piece)
                        time.sleep(0.03)
            except OSError:
                pass


class KeepAliveReads(unittest.TestCase):
    def setUp(self):
        self.backend = Backend("b1")
        self.addCleanup(self.backend.stop)

    def tether(self, servers, **overrides):
        t = Tether(tether_config(servers, free_port(), workers=1, **overrides))
        self.addCleanup(t.close)
        return t

    def closed_within(self, sock, reader, seconds):
        """True when the peer closes `sock` within `seconds` (after what was read)."""
        try:
            return reader.read_to_eof(time.monotonic() + seconds) is not None
        except (TimeoutError, socket.timeout):
            return False

    def test_half_close_with_the_only_request_closes_after_the_answer(self):
        t = self.tether([("b1", self.backend.port)], timeouts="idle: 30s")
        for _ in range(5):  # the end of stream with, or just after, the request
            with socket.create_connection((HOST, t.port), timeout=5) as sock:
                sock.sendall(build_request("GET", "/", host=f"{HOST}:{t.port}"))
                sock.shutdown(socket.SHUT_WR)
                reader = _Reader(sock)
                resp = read_response(reader, "GET", 5)
                self.assertEqual(resp.status, 200)
                started = time.monotonic()
                self.assertTrue(self.closed_within(sock, reader, 5),
                                "tether kept a half-closed connection open")
                self.assertLess(time.monotonic() - started, 5)

    def test_half_close_after_keepalive_requests_closes_after_the_last_answer(self):
        t = self.tether([("b1", self.backend.port)], timeouts="idle: 30s")
        with socket.create_connection((HOST, t.port), timeout=5) as sock:
            reader = _Reader(sock)
            for i in range(5):
                sock.sendall(build_request("GET", f"/?i={i}", host=f"{HOST}:{t.port}"))
                if i == 4:
                    sock.shutdown(socket.SHUT_WR)
                self.assertEqual(read_response(reader, "GET", 5).status, 200)
            self.assertTrue(self.closed_within(sock, reader, 5),
                            "tether kept a half-closed connection open")

    def test_backend_closing_with_a_keepalive_answer_is_retried(self):
        server = OneShotKeepAliveServer()
        self.addCleanup(server.close)
        t = self.tether([("s1", server.port)], upstream={"keepalive": 4})
        with HttpConnection(HOST, t.port) as conn:
            for i in range(10):
                resp = conn.request("GET", f"/?i={i}")
                self.assertEqual(resp.status, 200, resp.body)
                self.assertTrue(resp.body.startswith(b"conn "))
        self.assertGreaterEqual(server.connections, 10)

    def test_pooled_and_new_connections_with_whole_and_streamed_answers(self):
        t = self.tether([("b1", self.backend.port)], upstream={"keepalive": 4})
        before = self.backend.stats()["connections"]
        sizes = [10, 300000, 0, 5000, 1 << 20, 10]  # whole, streamed (relay_body), whole...
        with HttpConnection(HOST, t.port) as conn:
            for i, n in enumerate(sizes):
                resp = conn.request("GET", f"/bytes?n={n}" if n else f"/?i={i}")
                self.assertEqual(resp.status, 200)
                self.assertEqual(len(resp.body), n if n else len(b"hello from b1\n"))
                self.assertNotEqual((resp.header("Connection") or "").lower(), "close")
            local = conn.sock.getsockname()
            resp = conn.request("HEAD", "/bytes?n=300000")  # no body whatever the length
            self.assertEqual((resp.status, resp.body), (200, b""))
            self.assertEqual(conn.request("GET", "/").status, 200)
            self.assertEqual(conn.sock.getsockname(), local)
        # The first request connected (the pool was empty); every later one found that
        # connection back in the pool, given back after a whole and after a streamed answer.
        self.assertEqual(self.backend.stats()["connections"] - before, 1 + 1)  # + /stats

    def test_wait_for_a_request_is_client_header_first_then_idle(self):
        t = self.tether([("b1", self.backend.port)], timeouts="client_header: 1s\nidle: 30s")
        with socket.create_connection((HOST, t.port), timeout=5) as silent:
            self.assertTrue(self.closed_within(silent, _Reader(silent), 10))
        with HttpConnection(HOST, t.port) as conn:
            self.assertEqual(conn.request("GET", "/").status, 200)
            self.assertFalse(conn.peer_closed(2.5), "closed at client_header between requests")
            self.assertEqual(conn.request("GET", "/").status, 200)
        t = self.tether([("b1", self.backend.port)], timeouts="client_header: 30s\nidle: 1s")
        with HttpConnection(HOST, t.port) as conn:
            for _ in range(2):
                self.assertEqual(conn.request("GET", "/").status, 200)
            self.assertTrue(conn.peer_closed(10), "kept past timeouts.idle")

    def test_close_delimited_body_after_keepalive_use(self):
        t = self.tether([("b1", self.backend.port)], upstream={"keepalive": 4})
        for n in (10, 5000, 300000):
            with HttpConnection(HOST, t.port) as conn:
                for i in range(3):
                    self.assertEqual(conn.request("GET", f"/?i={i}").status, 200)
                resp = conn.request("GET", f"/bytes?n={n}&mode=close")
                self.assertEqual(resp.status, 200)
                self.assertEqual(len(resp.body), n)

    def test_heads_and_bodies_in_pieces_on_kept_alive_connections(self):
        self.pieces_on_kept_alive_connections(interim=False)

    def test_interim_answers_of_the_backend_are_not_forwarded(self):
        # A 103 before each answer: tether reads past it (a new parser, the same deadline)
        # and the client gets the final answer only.
        self.pieces_on_kept_alive_connections(interim=True)

    def pieces_on_kept_alive_connections(self, interim):
        server = PiecewiseServer(interim)
        self.addCleanup(server.close)
        t = self.tether([("s1", server.port)], upstream={"keepalive": 4})
        host = f"{HOST}:{t.port}".encode()
        with socket.create_connection((HOST, t.port), timeout=5) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            reader = _Reader(sock)
            for i in range(3):
                requests = [  # (pieces sent 30 ms apart, the body the backend sees)
                    ([b"GET /a HTTP/1.1\r\nHo", b"st: " + host + b"\r\n", b"\r\n"], b""),
                    ([b"POST /b HTTP/1.1\r\nHost: " + host + b"\r\nContent-Length: 6\r\n\r\nab",
                      b"cd", b"e" + str(i).encode()], b"abcde" + str(i).encode()),
                    ([b"GET /c HTTP/1.1\r\nHost: " + host + b"\r\n\r\n"], b""),  # whole
                ]
                for pieces, body in requests:
                    for piece in pieces:
                        sock.sendall(piece)
                        time.sleep(0.03)
                    method = "POST" if body else "GET"
                    resp = read_response(reader, method, 5)
                    self.assertEqual(resp.status, 200, resp.body)
                    self.assertEqual(resp.interim, [])
                    self.assertEqual(resp.header("X-Pieces"), "3")
                    self.assertEqual(resp.body, b"echo:" + body)

    def test_pipelined_answers_read_late_arrive_whole_and_in_order(self):
        t = self.tether([("b1", self.backend.port)], upstream={"keepalive": 4})
        count = 20000  # ~350 bytes each: far more than the sockets' buffers hold
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.settimeout(60)
            sock.connect((HOST, t.port))
            host = f"{HOST}:{t.port}"
            requests = b"".join(build_request("GET", f"/headers?i={i}", host=host)
                                for i in range(count))
            sender = threading.Thread(target=sock.sendall, args=(requests,), daemon=True)
            sender.start()
            time.sleep(1.0)  # nothing read meanwhile: tether's writes fill the socket
            reader = _Reader(sock)
            for i in range(count):
                resp = read_response(reader, "GET", 60)
                self.assertEqual(resp.status, 200)
                self.assertTrue(resp.text.startswith(f"GET /headers?i={i} HTTP/1.1\n"),
                                resp.text[:80])
            sender.join(timeout=60)
            self.assertFalse(sender.is_alive())


if __name__ == "__main__":
    unittest.main()
