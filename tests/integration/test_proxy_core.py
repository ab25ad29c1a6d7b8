"""The proxy core end to end: the real tether binary in front of real demo backends.

Covers keep-alive on both sides, pipelining, streamed uploads and downloads of 50 MB with a
flat RSS, a 30 s long-poll (slow-ish: ~30 s), WebSocket echo, the error statuses (502, 503,
504, 400, 413, 431) and that nothing of a refused request reaches a backend, head rewriting,
round_robin and least_conn, the SIGTERM drain, the access log formats and the command line.

Every test starts its own backends and tether on free ports (`workers: 2` unless it needs one)
and stops them by PID. Uploads go to /sink (read and discarded by the backend); a streamed
echo of a large upload (both directions at once) is in test_duplex_relay.py.
"""

import json
import re
import signal
import socket
import subprocess
import threading
import time
import unittest

from harness import (HOST, Backend, HttpConnection, Tether, WebSocket, _binary, _Reader,
                     build_request, exchange_raw, free_port, http_request, pattern_bytes,
                     read_response, send_raw, tether_check, tether_config)

MB = 1 << 20
BIG = 50 * MB


def parse_responses(data: bytes) -> list:
    """Every complete response in `data` (bytes read until the peer closed)."""
    reader, out = _Reader(None, data), []
    while reader.buf:
        out.append(read_response(reader, "GET", 1.0))
    return out


def streamed_body(n: int, chunked: bool):
    """n pattern bytes, the 256 KiB pieces HttpConnection streams them in, and the headers
    (none for chunked, Content-Length otherwise)."""
    data = pattern_bytes(n)
    pieces = (data[i:i + 256 * 1024] for i in range(0, n, 256 * 1024))
    return data, pieces, {} if chunked else {"Content-Length": str(n)}


class RssSampler:
    """Samples a Tether's VmRSS every 20 ms in a thread while in the `with` block."""

    def __init__(self, tether: Tether):
        self.tether, self.samples = tether, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                self.samples.append(self.tether.rss_kb())
            except (OSError, RuntimeError):
                return
            self._stop.wait(0.02)

    def __enter__(self):
        self.baseline = self.tether.rss_kb()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(2)

    @property
    def growth_kb(self) -> int:
        return max(self.samples, default=self.baseline) - self.baseline


class ProxyTestCase(unittest.TestCase):
    """Starts backends and tether per test, each stopped by a cleanup."""

    def backends(self, *names: str) -> list[Backend]:
        out = []
        for name in names:
            b = Backend(name)
            self.addCleanup(b.__exit__, None, None, None)
            out.append(b)
        return out

    def tether(self, servers, workers=2, **overrides) -> Tether:
        port = free_port()
        servers = [(s.name, s.port) if isinstance(s, Backend) else s for s in servers]
        t = Tether(tether_config(servers, port, workers=workers, **overrides))
        self.addCleanup(t.close)
        return t

    def get(self, t: Tether, path: str, method="GET", **kw):
        return http_request(HOST, t.port, method, path, **kw)

    def assert_error(self, resp, status: int, t: Tether | None = None):
        logs = t.logs() if t else ""
        self.assertEqual(resp.status, status, f"{resp!r} {resp.text!r}\ntether stderr:\n{logs}")
        self.assertRegex(resp.header("X-Request-Id", ""), r"\S", "no X-Request-Id")
        self.assertTrue(resp.header("Content-Type", "").startswith("text/plain"),
                        resp.headers)
        self.assertTrue(resp.body, "empty error body")

    def assert_untouched(self, backend: Backend, action):
        """Runs action(); the backend sees no request but the two /stats around it."""
        before = backend.stats()
        result = action()
        time.sleep(0.2)
        after = backend.stats()
        self.assertEqual(after["requests"] - before["requests"], 1,
                         "the backend received the refused request")
        return result


# ----------------------------------------------------------------------------- keep-alive

class KeepAliveAndPipelining(ProxyTestCase):
    def test_keepalive_reuse_both_sides(self):
        b, = self.backends("b1")
        t = self.tether([b], upstream={"keepalive": 8})
        before = b.stats()
        with HttpConnection(HOST, t.port) as conn:
            local = conn.sock.getsockname()
            for i in range(200):
                resp = conn.request("GET", f"/?i={i}")
                self.assertEqual(resp.status, 200)
                self.assertEqual(resp.body, b"hello from b1\n")
                self.assertNotEqual((resp.header("Connection") or "").lower(), "close")
            self.assertEqual(conn.sock.getsockname(), local)
            self.assertFalse(conn.peer_closed(0.2), "tether closed the client connection")
        after = b.stats()
        self.assertEqual(after["requests"] - before["requests"], 201)
        upstream_conns = after["connections"] - before["connections"] - 1  # minus /stats
        self.assertLessEqual(upstream_conns, 2 * 2, f"{upstream_conns} upstream connections "
                                                    "for 200 requests")

    def test_pipelining_answers_in_order(self):
        b, = self.backends("b1")
        t = self.tether([b])
        paths = [f"/headers?i={i}" if i % 2 else f"/status?code={200 + i // 2}"
                 for i in range(10)]
        with HttpConnection(HOST, t.port) as conn:
            conn.send(b"".join(build_request("GET", p, host=conn.host_header()) for p in paths))
            for i, path in enumerate(paths):
                resp = conn.read_response()
                if i % 2:
                    self.assertEqual(resp.status, 200)
                    self.assertTrue(resp.text.startswith(f"GET {path} HTTP/1.1\n"), resp.text)
                else:
                    code = 200 + i // 2
                    self.assertEqual(resp.status, code)
                    if code not in (204, 205):
                        self.assertEqual(resp.text, f"status {code}\n")


# ----------------------------------------------------------------------------- bodies

class Bodies(ProxyTestCase):
    def test_chunked_upload_echo_intact(self):
        b, = self.backends("b1")
        t = self.tether([b])
        pieces = [pattern_bytes(n) for n in (1, 100, 5000, 70000, 3, 200000)]
        with HttpConnection(HOST, t.port) as conn:
            resp = conn.request("POST", "/echo", body=iter(pieces),
                                headers={"Content-Type": "x/y"})
            self.assertEqual(resp.status, 200)
            self.assertEqual(resp.body, b"".join(pieces))
            self.assertEqual(conn.request("GET", "/healthz").body, b"ok\n")

    def _upload(self, chunked: bool):
        b, = self.backends("b1")
        t = self.tether([b], limits={"max_body_size": "100m"})
        _, pieces, headers = streamed_body(BIG, chunked)
        with HttpConnection(HOST, t.port, timeout=60) as conn, RssSampler(t) as rss:
            resp = conn.request("POST", "/sink", body=pieces, headers=headers)
        self.assertEqual(resp.status, 200, resp.text)
        self.assertEqual(resp.body, b"%d\n" % BIG)
        self.assertLess(rss.growth_kb, 32 * 1024, f"RSS grew {rss.growth_kb} KiB")

    def test_50mb_chunked_upload_rss_flat(self):
        self._upload(chunked=True)

    def test_50mb_content_length_upload_rss_flat(self):
        self._upload(chunked=False)

    def _download(self, mode: str, framing: str):
        b, = self.backends("b1")
        t = self.tether([b])
        with HttpConnection(HOST, t.port, timeout=60) as conn, RssSampler(t) as rss:
            resp = conn.request("GET", f"/bytes?n={BIG}&mode={mode}")
            self.assertEqual(resp.status, 200)
            self.assertEqual(resp.framing, framing)
            self.assertEqual(len(resp.body), BIG)
            self.assertTrue(resp.body == pattern_bytes(BIG), "body differs from the pattern")
            # the client connection is still usable afterwards
            self.assertEqual(conn.request("GET", "/healthz").body, b"ok\n")
        self.assertLess(rss.growth_kb, 32 * 1024, f"RSS grew {rss.growth_kb} KiB")

    def test_50mb_download_length(self):
        self._download("length", "length")

    def test_50mb_download_chunked(self):
        self._download("chunked", "chunked")

    def test_50mb_download_close_delimited_reframed_chunked(self):
        self._download("close", "chunked")

    def test_slowish_long_poll_held_30s(self):
        """Slow-ish (~30 s): a long-poll held 30 s under upstream_response 60s."""
        b, = self.backends("b1")
        t = self.tether([b], timeouts={"upstream_response": "60s"})
        start = time.monotonic()
        resp = self.get(t, "/sleep?ms=30000", timeout=45)
        self.assertEqual(resp.status, 200, t.logs())
        self.assertEqual(resp.body, b"slept 30000\n")
        self.assertGreaterEqual(time.monotonic() - start, 29.5)


# ----------------------------------------------------------------------------- WebSocket

class WebSockets(ProxyTestCase):
    def test_ws_echo_1mb_message(self):
        b1, b2 = self.backends("b1", "b2")
        t = self.tether([b1, b2])
        data = pattern_bytes(MB)
        with WebSocket.connect(HOST, t.port, "/ws", timeout=20) as ws:
            ws.send_binary(data)
            op, got = ws.recv()
            self.assertEqual(op, WebSocket.BINARY)
            self.assertTrue(got == data, "1 MB echo differs")
            ws.send_text("x" * MB)
            self.assertEqual(ws.recv_text(), "x" * MB)

    def test_ws_10000_small_messages_and_whoami_sticks(self):
        b1, b2 = self.backends("b1", "b2")
        t = self.tether([b1, b2])
        with WebSocket.connect(HOST, t.port, "/ws", timeout=30) as ws:
            ws.send_text("whoami")
            name = ws.recv_text()
            self.assertIn(name, ("b1", "b2"))
            for batch in range(100):
                msgs = [f"m{batch}-{i}" for i in range(100)]
                for m in msgs:
                    ws.send_text(m)
                for m in msgs:
                    self.assertEqual(ws.recv_text(), m)
                if batch % 10 == 0:
                    ws.send_text("whoami")
                    self.assertEqual(ws.recv_text(), name)
            self.assertEqual(ws.close(), 1000)


# ----------------------------------------------------------------------------- errors

class Errors(ProxyTestCase):
    def test_backend_refusing_502(self):
        t = self.tether([("dead", free_port())])
        self.assert_error(self.get(t, "/"), 502, t)

    def test_backend_closing_502(self):
        b, = self.backends("b1")
        t = self.tether([b])
        self.assert_error(self.get(t, "/close"), 502, t)

    def test_upstream_response_timeout_504(self):
        b, = self.backends("b1")
        t = self.tether([b], timeouts={"upstream_response": "1s"})
        # The backend would answer after 10 s; a 504 well before that can only
        # come from tether's 1 s timeout (the margin is for a loaded CI machine).
        start = time.monotonic()
        self.assert_error(self.get(t, "/sleep?ms=10000"), 504, t)
        self.assertLess(time.monotonic() - start, 8.0)

    def test_all_servers_down_503_retry_after(self):
        t = self.tether([("d1", free_port()), ("d2", free_port())],
                        upstream={"health_check": {"initial": "down", "interval": "1s"}})
        resp = self.get(t, "/")
        self.assert_error(resp, 503, t)
        self.assertIsNotNone(resp.header("Retry-After"), resp.headers)


class Limits(ProxyTestCase):
    def test_body_over_max_body_size_413(self):
        b, = self.backends("b1")
        t = self.tether([b], limits={"max_body_size": "1k"})
        resp = self.assert_untouched(
            b, lambda: self.get(t, "/echo", "POST", body=b"x" * 2000))
        self.assert_error(resp, 413, t)

    def test_head_over_max_header_size_431(self):
        b, = self.backends("b1")
        t = self.tether([b], limits={"max_header_size": "4k"})
        resp = self.assert_untouched(
            b, lambda: self.get(t, "/", headers={"X-Big": "a" * 8000}))
        self.assert_error(resp, 431, t)


class Smuggling(ProxyTestCase):
    CASES = {
        "cl_and_te": b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "duplicate_cl": b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                        b"Content-Length: 5\r\n\r\nhello",
        "te_chunked_identity": b"POST /echo HTTP/1.1\r\nHost: x\r\n"
                               b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        "bad_chunk_size": b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                          b"\r\nzz\r\nhello\r\n0\r\n\r\n",
        "missing_host": b"GET /headers HTTP/1.1\r\nUser-Agent: t\r\n\r\n",
    }

    def _refused(self, raw: bytes):
        b, = self.backends("b1")
        t = self.tether([b])
        data = self.assert_untouched(b, lambda: exchange_raw(HOST, t.port, raw))
        responses = parse_responses(data)
        self.assertEqual(len(responses), 1, responses)
        self.assert_error(responses[0], 400, t)

    def test_cl_and_te_400(self):
        self._refused(self.CASES["cl_and_te"])

    def test_duplicate_content_length_400(self):
        self._refused(self.CASES["duplicate_cl"])

    def test_te_chunked_identity_400(self):
        self._refused(self.CASES["te_chunked_identity"])

    def test_bad_chunk_size_400(self):
        self._refused(self.CASES["bad_chunk_size"])

    def test_missing_host_400(self):
        self._refused(self.CASES["missing_host"])

    def test_pipelined_request_after_bad_one_not_forwarded(self):
        good = b"GET /headers?smuggled=1 HTTP/1.1\r\nHost: x\r\n\r\n"
        for name, bad in self.CASES.items():
            with self.subTest(name):
                self._refused(bad + good)  # one 400, then the connection is closed


# ----------------------------------------------------------------------------- headers

class HeaderRewrite(ProxyTestCase):
    @staticmethod
    def _fields(text: str) -> list[tuple[str, str]]:
        out = []
        for line in text.splitlines()[1:]:
            name, _, value = line.partition(":")
            out.append((name.lower(), value.strip()))
        return out

    def _values(self, text, name):
        return [v for k, v in self._fields(text) if k == name.lower()]

    def test_forwarded_headers_request_id_and_hop_by_hop(self):
        b, = self.backends("b1")
        t = self.tether([b])
        headers = [("Host", "front.example:8080"), ("X-Forwarded-For", "203.0.113.7"),
                   ("Connection", "keep-alive, X-Hop"), ("X-Hop", "secret"),
                   ("Keep-Alive", "timeout=5"), ("TE", "trailers"),
                   ("Proxy-Connection", "keep-alive"), ("X-Keep", "yes")]
        resp = self.get(t, "/headers", headers=headers)
        self.assertEqual(resp.status, 200)
        seen = resp.text
        self.assertEqual(self._values(seen, "X-Forwarded-For"), ["203.0.113.7, 127.0.0.1"],
                         seen)
        self.assertEqual(self._values(seen, "X-Real-IP"), ["127.0.0.1"], seen)
        self.assertEqual(self._values(seen, "X-Forwarded-Proto"), ["http"], seen)
        self.assertEqual(self._values(seen, "X-Forwarded-Host"), ["front.example:8080"], seen)
        rid = self._values(seen, "X-Request-Id")
        self.assertEqual(len(rid), 1, seen)
        self.assertRegex(rid[0], r"^[0-9a-f]{32}$")
        self.assertEqual(self._values(seen, "X-Keep"), ["yes"])
        for hop in ("X-Hop", "Keep-Alive", "TE", "Proxy-Connection"):
            self.assertEqual(self._values(seen, hop), [], f"{hop} forwarded:\n{seen}")
        for value in self._values(seen, "Connection"):
            self.assertNotIn("x-hop", value.lower(), seen)

    def test_client_request_id_kept(self):
        b, = self.backends("b1")
        t = self.tether([b])
        resp = self.get(t, "/headers", headers={"X-Request-Id": "client-id-42"})
        self.assertEqual(self._values(resp.text, "X-Request-Id"), ["client-id-42"], resp.text)


# ----------------------------------------------------------------------------- balancing

class Balancing(ProxyTestCase):
    def test_round_robin_spreads_evenly(self):
        bs = self.backends("b1", "b2", "b3")
        t = self.tether(bs, workers=1)
        counts = {}
        for _ in range(30):
            name = self.get(t, "/").header("X-Backend")
            counts[name] = counts.get(name, 0) + 1
        self.assertEqual(counts, {"b1": 10, "b2": 10, "b3": 10})

    def test_least_conn_avoids_busy_server(self):
        bs = self.backends("b1", "b2", "b3")
        t = self.tether(bs, upstream={"balance": "least_conn"})
        held = {}

        def long_poll():
            held["resp"] = self.get(t, "/sleep?ms=3000")

        thread = threading.Thread(target=long_poll, daemon=True)
        thread.start()
        time.sleep(0.5)
        names = {self.get(t, "/").header("X-Backend") for _ in range(12)}
        thread.join(10)
        busy = held["resp"].header("X-Backend")
        self.assertEqual(held["resp"].status, 200)
        self.assertNotIn(busy, names)
        self.assertEqual(len(names), 2, names)


# ----------------------------------------------------------------------------- drain

class Drain(ProxyTestCase):
    def _tether(self, b):
        return self.tether([b], upstream={"drain": {"close_spread": "1s"}},
                           timeouts={"shutdown": "5s"})

    def test_sigterm_closes_tunnel_1001_and_exits_0(self):
        b, = self.backends("b1")
        t = self._tether(b)
        ws = WebSocket.connect(HOST, t.port, "/ws")
        self.addCleanup(ws.abort)
        ws.send_text("whoami")
        self.assertEqual(ws.recv_text(), "b1")
        start = time.monotonic()
        t.signal(signal.SIGTERM)
        op, _ = ws.recv(timeout=5)
        self.assertEqual(op, WebSocket.CLOSE)
        self.assertEqual(ws.close_code, 1001)
        self.assertEqual(t.wait(6), 0, t.logs())
        self.assertLess(time.monotonic() - start, 5.5)

    def test_sigterm_finishes_in_flight_request(self):
        b, = self.backends("b1")
        t = self._tether(b)
        out = {}

        def slow():
            try:
                out["resp"] = self.get(t, "/sleep?ms=1500")
            except Exception as e:  # noqa: BLE001 - reported below
                out["error"] = e

        thread = threading.Thread(target=slow, daemon=True)
        thread.start()
        time.sleep(0.4)
        t.signal(signal.SIGTERM)
        thread.join(8)
        self.assertNotIn("error", out, f"{out.get('error')!r}\n{t.logs()}")
        self.assertEqual(out["resp"].status, 200)
        self.assertEqual(out["resp"].body, b"slept 1500\n")
        self.assertEqual(t.wait(6), 0, t.logs())


# ----------------------------------------------------------------------------- access log

class AccessLog(ProxyTestCase):
    def _wait_log(self, t: Tether, needle: str) -> str:
        deadline = time.monotonic() + 3
        while needle not in t.access_log() and time.monotonic() < deadline:
            time.sleep(0.05)
        return t.access_log()

    def test_combined_format(self):
        b, = self.backends("b1")
        t = self.tether([b])
        self.get(t, "/status?code=201", headers={"User-Agent": "probe/1.0",
                                                 "Referer": "http://r.example/"})
        log = self._wait_log(t, "/status?code=201")
        line = next((ln for ln in log.splitlines() if "/status?code=201" in ln), None)
        self.assertIsNotNone(line, log)
        self.assertRegex(line, r'^127\.0\.0\.1 - \S+ \[\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} '
                               r'[+-]\d{4}\] "GET /status\?code=201 HTTP/1\.1" 201 \d+ '
                               r'"http://r\.example/" "probe/1\.0"$')

    def test_json_format(self):
        b, = self.backends("b1")
        t = self.tether([b], access_log={"path": "stdout", "format": "json"})
        self.get(t, "/status?code=202")
        log = self._wait_log(t, "/status?code=202")
        entries = [json.loads(ln) for ln in log.splitlines() if ln.strip()]
        entry = next((e for e in entries if e.get("uri") == "/status?code=202"), None)
        self.assertIsNotNone(entry, log)
        self.assertEqual(entry["status"], 202)

    def test_path_off_writes_nothing(self):
        b, = self.backends("b1")
        t = self.tether([b], access_log={"path": "off"})
        for _ in range(3):
            self.assertEqual(self.get(t, "/").status, 200)
        time.sleep(0.5)
        self.assertEqual(t.access_log(), "")


# ----------------------------------------------------------------------------- command line

class CommandLine(unittest.TestCase):
    def test_check_unknown_key_fails_with_position(self):
        config = tether_config([("s1", 3001)], 8080) + "no_such_key: 1\n"
        code, out, err = tether_check(config)
        self.assertEqual(code, 1, out + err)
        self.assertRegex(err, r"tether\.yaml:\d+:\d+:")

    def test_check_valid_config_passes(self):
        code, out, err = tether_check(tether_config([("s1", 3001)], 8080))
        self.assertEqual(code, 0, out + err)

    def test_version(self):
        done = subprocess.run([_binary("TETHER_BIN"), "--version"], capture_output=True,
                              timeout=10, stdin=subprocess.DEVNULL)
        self.assertEqual(done.returncode, 0)
        self.assertRegex(done.stdout.decode() + done.stderr.decode(), r"\d+\.\d+")


if __name__ == "__main__":
    unittest.main()
