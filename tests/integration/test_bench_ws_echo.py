"""The benchmarks' WebSocket echo backend (tools/bench/ws_echo_backend.cpp, tether-ws-echo)
directly and behind tether: the upgrade (Sec-WebSocket-Accept checked by harness.WebSocket),
tools/ws_check.py, messages echoed as unmasked frames with their FIN bit and opcode
(fragments stay fragments), 16- and 64-bit lengths, ping -> pong, the close status echoed,
plain GET / answered, and tether-ws-bench echo against both. Needs WS_ECHO_BIN (ctest sets it;
tether-ws-bench is found beside it)."""
import json
import os
import re
import struct
import subprocess
import sys
import time
import unittest

import harness

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


class EchoBackend:
    def __init__(self):
        self.proc = subprocess.Popen([harness._binary("WS_ECHO_BIN"), "--name", "e1", "--listen",
                                      "127.0.0.1:0"], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        line = harness.read_stdout_line(self.proc, 10, "tether-ws-echo")
        self.port = int(re.fullmatch(r"listening \S+:(\d+)", line).group(1))

    def stop(self):
        self.proc.kill()  # ours, by PID
        self.proc.wait(timeout=10)


def frame(ws, timeout=5.0):
    """(fin, opcode, masked, payload) of the next frame, as sent by the peer."""
    deadline = time.monotonic() + timeout
    b0, b1 = ws.reader.read_exact(2, deadline)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", ws.reader.read_exact(2, deadline))[0]
    elif n == 127:
        n = struct.unpack("!Q", ws.reader.read_exact(8, deadline))[0]
    masked = bool(b1 & 0x80)
    if masked:
        ws.reader.read_exact(4, deadline)
    return bool(b0 & 0x80), b0 & 0x0F, masked, ws.reader.read_exact(n, deadline)


class BenchWsEchoTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.backend = EchoBackend()
        cls.tether = harness.Tether(harness.tether_config([("e1", cls.backend.port)],
                                                          harness.free_port()))
        cls.proxy_port = cls.tether.port

    @classmethod
    def tearDownClass(cls):
        cls.tether.close()
        cls.backend.stop()

    def ports(self):
        return {"direct": self.backend.port, "tether": self.proxy_port}

    def test_ws_check(self):
        for via, port in self.ports().items():
            with self.subTest(via=via):
                r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "ws_check.py"),
                                    f"ws://127.0.0.1:{port}/"], capture_output=True, text=True,
                                   timeout=30)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(r.stdout.splitlines(), [
                    "HTTP/1.1 101 Switching Protocols", "sent 'whoami', got 'whoami'",
                    "sent 'hello', got 'hello'", "closed with 1000"])

    def test_frames(self):
        for via, port in self.ports().items():
            with self.subTest(via=via):
                ws = harness.WebSocket.connect("127.0.0.1", port)
                ws.send_frame(ws.TEXT, b"frag-", fin=False)
                ws.send_frame(ws.CONT, b"ment", fin=True)
                self.assertEqual(frame(ws), (False, ws.TEXT, False, b"frag-"))
                self.assertEqual(frame(ws), (True, ws.CONT, False, b"ment"))
                for n in (0, 125, 126, 300, 65535, 70000):
                    data = harness.pattern_bytes(n)
                    ws.send_binary(data)
                    self.assertEqual(frame(ws), (True, ws.BINARY, False, data), n)
                ws.ping(b"p1")
                self.assertEqual(frame(ws), (True, ws.PONG, False, b"p1"))
                ws.send_frame(ws.CLOSE, struct.pack("!H", 4001) + b"bye")
                self.assertEqual(frame(ws), (True, ws.CLOSE, False, struct.pack("!H", 4001)))
                ws.sock.close()

    def test_plain_get(self):
        r = harness.http_request("127.0.0.1", self.backend.port, "GET", "/")
        self.assertEqual((r.status, r.body), (200, b"hello from e1\n"))

    def test_bench_client(self):
        bench = os.path.join(os.path.dirname(harness._binary("WS_ECHO_BIN")), "tether-ws-bench")
        for via, port in self.ports().items():
            with self.subTest(via=via):
                r = subprocess.run([bench, "echo", "--host", "127.0.0.1", "--port", str(port),
                                    "--conns", "8", "--seconds", "0.5"], capture_output=True,
                                   text=True, timeout=30)
                self.assertEqual(r.returncode, 0, r.stderr)
                j = json.loads(r.stdout.strip().splitlines()[-1])
                self.assertGreater(j["messages"], 0)
                self.assertEqual((j["failed"], j["errors"], j["timed_out"]), (0, 0, False), r.stderr)
                self.assertEqual(r.stderr, "")


if __name__ == "__main__":
    unittest.main()
