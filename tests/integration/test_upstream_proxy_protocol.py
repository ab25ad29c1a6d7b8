"""PROXY protocol sent to backends (`upstreams.X.send_proxy_protocol: v1|v2`): a test backend
(tls_backend.py) parses the header each new connection starts with and echoes the address it
learnt. It is the client's address and port; behind a PROXY-protocol listener, the original
client's; with a trusted X-Forwarded-For, that hop's (port 0). A kept-alive upstream connection
is reused only for the same client connection (the same header), as HAProxy 2.4+ does. Also:
PROXY then TLS to a TLS backend, and a WebSocket tunnel whose backend learnt the client."""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import struct
import tempfile
import unittest

from harness import (HOST, HttpConnection, Tether, WebSocket, free_port, http_request,
                     tether_config)
from tls_backend import TlsBackend
from tls_certs import make_ca, make_leaf


def proxy_v2(src: str, sport: int, dst: str, dport: int) -> bytes:
    return (b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", 12) +
            socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport))


class SendProxy(unittest.TestCase):
    def start(self, version: str, backend: TlsBackend | None = None, **overrides):
        self.backend = backend or TlsBackend(expect_proxy=version)
        self.addCleanup(self.backend.stop)
        port = free_port()
        upstream = {"send_proxy_protocol": version}
        upstream.update(overrides.pop("upstream", {}))
        cfg = tether_config([("s1", self.backend.port)], port, upstream=upstream, **overrides)
        t = Tether(cfg)
        self.addCleanup(t.close)
        return t

    def check_client_address(self, version: str):
        t = self.start(version)
        with HttpConnection(HOST, t.port) as c:
            client_port = c.sock.getsockname()[1]
            first = c.request("GET", "/a").json()
            second = c.request("GET", "/b").json()
        self.assertEqual(first["proxy"]["version"], int(version[1]))
        self.assertEqual(first["proxy"]["src"], "127.0.0.1")
        self.assertEqual(first["proxy"]["sport"], client_port)
        self.assertEqual(first["proxy"]["dst"], "127.0.0.1")
        self.assertEqual(first["proxy"]["dport"], t.port)
        # The same client connection keeps its upstream connection (one header per connection).
        self.assertEqual((second["conn"], second["req"]), (first["conn"], 2))
        # Another client connection never gets it: its header would be another one.
        with HttpConnection(HOST, t.port) as c2:
            other_port = c2.sock.getsockname()[1]
            third = c2.request("GET", "/c").json()
        self.assertNotEqual(third["conn"], first["conn"])
        self.assertEqual(third["proxy"]["sport"], other_port)
        self.assertEqual(self.backend.proxy_failures, [])

    def test_v1_carries_the_client_address_and_reuse_stays_per_client(self):
        self.check_client_address("v1")

    def test_v2_carries_the_client_address_and_reuse_stays_per_client(self):
        self.check_client_address("v2")

    def test_behind_a_proxy_protocol_listener_the_original_client_is_sent(self):
        t = self.start("v1", listen={"proxy_protocol": True})
        with socket.create_connection((HOST, t.port), timeout=10) as s:
            s.sendall(proxy_v2("203.0.113.7", 40123, "192.0.2.1", 443) +
                      b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        info = json.loads(data.split(b"\r\n\r\n", 1)[1])
        self.assertEqual(info["proxy"]["src"], "203.0.113.7")
        self.assertEqual(info["proxy"]["sport"], 40123)

    def test_trusted_forwarded_for_hop_is_sent_with_port_zero(self):
        t = self.start("v2", trusted_proxies=["127.0.0.1"])
        r = http_request(HOST, t.port, "GET", "/", headers={"X-Forwarded-For": "198.51.100.9"})
        info = r.json()
        self.assertEqual(info["proxy"]["src"], "198.51.100.9")
        self.assertEqual(info["proxy"]["sport"], 0)
        # From an untrusted peer the header is not believed: the socket peer is sent.
        t2 = self.start("v2")
        info = http_request(HOST, t2.port, "GET", "/",
                            headers={"X-Forwarded-For": "198.51.100.9"}).json()
        self.assertEqual(info["proxy"]["src"], "127.0.0.1")

    def test_websocket_backend_learns_the_client(self):
        t = self.start("v2")
        ws = WebSocket.connect(HOST, t.port, "/ws")
        try:
            info = json.loads(ws.response.header("X-Backend-Info"))
            self.assertEqual(info["proxy"]["src"], "127.0.0.1")
            self.assertEqual(info["proxy"]["sport"], ws.sock.getsockname()[1])
            ws.send_text("ping through PROXY")
            self.assertEqual(ws.recv_text(), "ping through PROXY")
        finally:
            ws.close()


class SendProxyThenTls(unittest.TestCase):
    def test_proxy_header_precedes_the_tls_handshake(self):
        pki = tempfile.mkdtemp(prefix="tether-sendproxy-")
        self.addCleanup(shutil.rmtree, pki, True)
        make_ca(pki)
        make_leaf(pki, "backend", ["backend.test"], serial=21)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(pki, "backend.pem"), os.path.join(pki, "backend.key"))
        backend = TlsBackend(ctx, expect_proxy="v2")
        self.addCleanup(backend.stop)
        port = free_port()
        upstream = {"send_proxy_protocol": "v2",
                    "tls": {"ca": os.path.join(pki, "ca.pem"), "server_name": "backend.test"}}
        t = Tether(tether_config([("s1", backend.port)], port, upstream=upstream))
        self.addCleanup(t.close)
        with HttpConnection(HOST, t.port) as c:
            info = c.request("GET", "/").json()
            self.assertEqual(info["proxy"]["sport"], c.sock.getsockname()[1])
        self.assertIsNotNone(info["tls"])
        self.assertEqual(info["sni"], "backend.test")


if __name__ == "__main__":
    unittest.main()
