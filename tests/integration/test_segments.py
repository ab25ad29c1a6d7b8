"""One TCP segment per small proxied message, each way (docs/benchmarks.md, "Keep-alive: what
the proxy costs the client and the backend"): tether forwards a keep-alive request whose head
and body arrived together as one write to the backend, and an answer whose head and body
arrived together as one write to the client, never a head and then a body. A message split
in two writes costs the receiver a second wake-up and read, and the sender a second send.

Counted by the kernel, not timed: the receivers' TCP_INFO tcpi_data_segs_in (segments that
carried data) after N sequential exchanges on one client connection, each sent only after the
previous answer was read whole, must be N at the client and N at the backend (summed over the
backend connections tether used). Loopback's MSS is ~64 KiB, so one write of a small message
is one segment, and two writes are two.

The test starts its own backend (a Python keep-alive server that answers each request with
one sendall) and tether on free ports, stops them by PID, and bounds every wait.
"""

import socket
import struct
import threading
import unittest

from harness import HOST, Tether, free_port, tether_config

TCPI_DATA_SEGS_IN = 152  # offset of tcpi_data_segs_in in struct tcp_info (Linux >= 4.6)
EXCHANGES = 20           # of each kind: GET, and POST with a small body
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nhello\n"


def data_segs_in(sock: socket.socket) -> int:
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    if len(info) < TCPI_DATA_SEGS_IN + 4:
        raise unittest.SkipTest("this kernel's tcp_info has no tcpi_data_segs_in")
    return struct.unpack_from("I", info, TCPI_DATA_SEGS_IN)[0]


def read_message(sock: socket.socket, buf: bytearray) -> bytes:
    """One HTTP message with a Content-Length (or none: no body) from sock; buf keeps what
    was read past it."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before a whole head")
        buf += chunk
    end = buf.index(b"\r\n\r\n") + 4
    length = 0
    for line in bytes(buf[:end]).split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(buf) < end + length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before a whole body")
        buf += chunk
    message = bytes(buf[:end + length])
    del buf[:end + length]
    return message


class KeepAliveBackend:
    """Answers every request on every connection with ANSWER in one sendall; when a connection
    ends, adds its data segments received to `segments` and its requests to `requests`."""

    def __init__(self):
        self.segments = self.requests = 0
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self.sock = socket.create_server((HOST, 0), backlog=16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket):
        buf = bytearray()
        served = 0
        with conn:
            conn.settimeout(0.2)
            while not self._stop.is_set():
                try:
                    read_message(conn, buf)
                except socket.timeout:
                    continue
                except (OSError, ConnectionError):
                    break
                served += 1
                conn.sendall(ANSWER)
            with self.lock:
                self.segments += data_segs_in(conn)
                self.requests += served

    def close(self):
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)
        self.sock.close()


class OneSegmentPerMessage(unittest.TestCase):
    def test_requests_and_answers_go_in_one_segment_each(self):
        backend = KeepAliveBackend()
        self.addCleanup(backend.close)
        port = free_port()
        t = Tether(tether_config([("b1", backend.port)], port, workers=1,
                                 access_log={"path": "off"}))
        self.addCleanup(t.close)
        requests = []
        for i in range(EXCHANGES):
            requests.append(f"GET /get/{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            body = f"body {i:5d}\n".encode()
            requests.append(f"POST /post/{i} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}"
                            "\r\nContent-Type: text/plain\r\n\r\n".encode() + body)
        with socket.create_connection((HOST, port), timeout=10) as c:
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            before = data_segs_in(c)
            buf = bytearray()
            for request in requests:
                c.sendall(request)  # one write: head and body together
                answer = read_message(c, buf)
                self.assertTrue(answer.startswith(b"HTTP/1.1 200 "), answer)
                self.assertTrue(answer.endswith(b"\r\n\r\nhello\n"), answer)
            self.assertEqual(buf, b"")
            client_segments = data_segs_in(c) - before
        t.stop()  # closes its backend connections: the backend adds up what it received
        backend.close()
        self.assertEqual(backend.requests, len(requests))
        self.assertEqual(client_segments, len(requests),
                         "each answer (head and body from one backend write) in one segment")
        self.assertEqual(backend.segments, len(requests),
                         "each request (head, and body that came with it) in one segment")


if __name__ == "__main__":
    unittest.main()
