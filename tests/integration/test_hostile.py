"""Hostile requests: the corpus of tests/data/hostile/ replayed against tether.

One tether (workers: 1) runs in front of a RecordingBackend (hostile_common.py), a strict
origin server that keeps every byte it receives. Each case's bytes are sent on a fresh
connection; the test asserts the statuses tether answers (or that it closes without an
answer) and what the backend received: for a refused request not one byte (or, for a chunked
body whose error comes after the head went upstream, never a complete request), for an
accepted one exactly `forward` unambiguous requests (one framing, the expected body). Every refused
case is replayed a second time with a valid request pipelined behind it: that request must
never reach the backend, and the connection must be closed after the one error answer.
"""

import socket
import time
import unittest

from harness import HOST, Tether, _Reader, free_port, read_response, tether_config
from hostile_common import RecordingBackend, load_corpus

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
CLIENT_HEADER_S = 1
# How long to wait for tether to close a connection: client_header plus slack for a
# loaded machine.
CLOSE_WAIT_S = CLIENT_HEADER_S + 9


def parse_all(data: bytes) -> list:
    reader, responses = _Reader(None, data), []
    while reader.buf:
        responses.append(read_response(reader, "GET", 1.0))
    return responses


def exchange(port: int, raw: bytes, keep_open_after: int | None) -> tuple[list, bool]:
    """Sends raw, reads until tether closes, or until `keep_open_after` responses are in
    when that many successes are all that is expected: (responses, closed_by_tether)."""
    s = socket.create_connection((HOST, port), timeout=CLOSE_WAIT_S)
    try:
        try:
            s.sendall(raw)
        except OSError:
            pass  # tether may refuse and close before reading everything
        data = bytearray()
        closed = False
        deadline = time.monotonic() + CLOSE_WAIT_S
        while time.monotonic() < deadline:
            s.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            data += chunk
            if keep_open_after is not None:
                try:
                    if len(parse_all(bytes(data))) >= keep_open_after:
                        break
                except (AttributeError, ConnectionError, TimeoutError, ValueError):
                    pass  # a response not complete yet (the reader has no socket)
    finally:
        s.close()
    return parse_all(bytes(data)), closed


class HostileCorpus(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cases = load_corpus()
        cls.backend = RecordingBackend()
        port = free_port()
        cls.tether = Tether(tether_config(
            [("b1", cls.backend.port)], port, workers=1,
            timeouts=f"client_header: {CLIENT_HEADER_S}s\nidle: 5s",
            limits={"max_body_size": "1m", "max_header_size": "32k"}))

    @classmethod
    def tearDownClass(cls):
        cls.tether.close()
        cls.backend.close()

    def _run(self, case, raw: bytes, expect: list, forward: int):
        before_reqs = len(self.backend.requests())
        before_bytes = self.backend.bytes_received()
        successes_only = expect != ["close"] and all(e < 400 for e in expect)
        responses, closed = exchange(self.tether.port, raw,
                                     len(expect) if successes_only else None)
        statuses = [r.status for r in responses]
        ctx = f"{case.name} ({case.note}): got {statuses}, closed={closed}"
        if expect == ["close"]:
            self.assertEqual(statuses, [], ctx)
            self.assertTrue(closed, ctx)
        else:
            self.assertEqual(statuses, expect, ctx)
            if expect[-1] >= 400:
                self.assertTrue(closed, "connection kept open after an error: " + ctx)
                self.assertEqual(responses[-1].header("Connection", "").lower(), "close", ctx)
        if forward == 0:
            time.sleep(0.02)
            self.assertEqual(self.backend.bytes_received(), before_bytes,
                             f"the backend received bytes of a refused request: {ctx}")
        seen = self.backend.requests()[before_reqs:]
        self.assertEqual(len(seen), 0 if forward == "partial" else forward,
                         f"{ctx}: backend saw {seen}")
        for s in seen:
            self.assertNotEqual(s.target, b"/smuggled", ctx)
            if case.body is not None:
                self.assertEqual(s.body, case.body, ctx)
        self.assertEqual(self.backend.problems(), [], ctx)

    def test_corpus_is_large_and_covers_the_issue(self):
        self.assertGreaterEqual(len(self.cases), 150)
        prefixes = {c.name.split("-")[0] for c in self.cases}
        for p in ("cl", "content", "te", "chunk", "obs", "ctl", "method", "target", "version",
                  "host", "http09", "http2", "websocket", "pipelined"):
            self.assertIn(p, prefixes)

    def test_each_case(self):
        for case in self.cases:
            with self.subTest(case.name):
                self._run(case, case.raw, case.expect, case.forward)

    def test_request_pipelined_after_a_refused_one_is_never_forwarded(self):
        refused = [c for c in self.cases
                   if c.forward in (0, "partial") and c.expect != ["close"] and c.expect[-1] >= 400]
        self.assertGreater(len(refused), 100)
        for case in refused:
            with self.subTest(case.name):
                self._run(case, case.raw + SMUGGLED, case.expect,
                          "partial" if case.forward == "partial" else 0)
        self.assertNotIn(b"/smuggled", [s.target for s in self.backend.requests()])


if __name__ == "__main__":
    unittest.main()
