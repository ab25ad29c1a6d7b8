"""Client identity: PROXY protocol v1/v2 on a listener (plain and TLS) and trusted_proxies
with X-Forwarded-For. The client address they give is what ip_hash places, what X-Real-IP
and X-Forwarded-For carry to the backend and what the access log shows; a forged
X-Forwarded-For from an untrusted peer changes none of it; a malformed or missing PROXY
header closes the connection and is counted."""

from __future__ import annotations

import os
import re
import shutil
import socket
import ssl
import struct
import tempfile
import time
import unittest

from harness import (HOST, Backend, Tether, _Reader, build_request, free_port, free_ports,
                     http_request, read_response, tether_config)
from tls_certs import make_ca, make_leaf

CLIENTS = [f"198.51.100.{i}" for i in range(1, 25)]
# Pure consistent hashing: the bounded load would move a new client when the servers'
# connection counts differ at that moment (a previous connection still closing).
IP_HASH = "affinity: ip_hash\nip_hash:\n  balance_factor: 0"


def proxy_v1(src: str, sport: int = 40000) -> bytes:
    fam = "TCP6" if ":" in src else "TCP4"
    dst = "::1" if ":" in src else "127.0.0.1"
    return f"PROXY {fam} {src} {dst} {sport} 8080\r\n".encode()


def proxy_v2(src: str, sport: int = 40000, local: bool = False) -> bytes:
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    if local:
        return sig + bytes([0x20, 0x00, 0, 0])
    addr = socket.inet_aton(src) + socket.inet_aton("127.0.0.1") + struct.pack("!HH", sport, 8080)
    return sig + bytes([0x21, 0x11]) + struct.pack("!H", len(addr)) + addr


def request_via(port: int, preamble: bytes, path: str = "/headers", headers=(),
                wrap: ssl.SSLContext | None = None) -> tuple[str, str]:
    """One request on a new connection that starts with `preamble`; (backend name, body)."""
    with socket.create_connection((HOST, port), timeout=10) as raw:
        raw.sendall(preamble)
        sock = wrap.wrap_socket(raw, server_hostname="localhost") if wrap else raw
        try:
            sock.sendall(build_request("GET", path, [("Host", "x"), *headers]))
            resp = read_response(_Reader(sock), "GET", 10)
        finally:
            sock.close()
        return resp.header("X-Backend"), resp.body.decode()


def header_value(head: str, name: str) -> list[str]:
    return [line.split(":", 1)[1].strip() for line in head.splitlines()
            if line.lower().startswith(name.lower() + ":")]


class Identity(unittest.TestCase):
    def start(self, workers: int = 2, admin: bool = False, **overrides) -> Tether:
        self.backends = []
        for name in ("s1", "s2", "s3"):
            b = Backend(name)
            self.addCleanup(b.__exit__, None, None, None)
            self.backends.append(b)
        port, admin_port = free_ports(2)
        ports = [port]
        if admin:
            self.admin = admin_port
            overrides["admin"] = {"address": f"{HOST}:{self.admin}"}
            ports.append(self.admin)
        overrides.setdefault("upstream", IP_HASH)
        cfg = tether_config([(b.name, b.port) for b in self.backends], port, workers=workers,
                            **overrides)
        t = Tether(cfg, ports=ports)
        self.addCleanup(t.close)
        if admin:
            self.admin = t.ports[1]
        return t

    def placements(self, port: int, make_preamble, headers_for=lambda ip: (), wrap=None):
        """Backend of each client of CLIENTS, asked twice on new connections."""
        out = {}
        for ip in CLIENTS:
            first = request_via(port, make_preamble(ip), headers=headers_for(ip), wrap=wrap)[0]
            again = request_via(port, make_preamble(ip), headers=headers_for(ip), wrap=wrap)[0]
            self.assertEqual(first, again, f"{ip} moved between connections")
            out[ip] = first
        return out

    def test_proxy_v1_and_v2_decide_ip_hash_and_headers(self):
        t = self.start(listen={"proxy_protocol": True})
        by_v1 = self.placements(t.port, proxy_v1)
        by_v2 = self.placements(t.port, proxy_v2)
        self.assertEqual(by_v1, by_v2, "v1 and v2 carry the same addresses")
        self.assertGreater(len(set(by_v1.values())), 1, "24 client addresses all on one server")
        _, head = request_via(t.port, proxy_v2("203.0.113.77"))
        self.assertEqual(header_value(head, "X-Real-IP"), ["203.0.113.77"])
        self.assertEqual(header_value(head, "X-Forwarded-For"), ["203.0.113.77"])
        # LOCAL (a balancer's own check) keeps the socket peer.
        _, head = request_via(t.port, proxy_v2("", local=True))
        self.assertEqual(header_value(head, "X-Real-IP"), ["127.0.0.1"])
        deadline = time.monotonic() + 5
        while "203.0.113.77 " not in t.access_log() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertIn("203.0.113.77 ", t.access_log())

    def test_proxy_header_missing_or_malformed_closes_and_counts(self):
        t = self.start(admin=True, listen={"proxy_protocol": True},
                       timeouts="client_header: 1s")
        for bad in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"PROXY TCP4 1.2.3.4 nope 1 2\r\n",
                    b"\r\n\r\n\x00\r\nQUIT\n\x11\x11\x00\x0c" + b"\x00" * 12):
            with socket.create_connection((HOST, t.port), timeout=5) as s:
                s.sendall(bad)
                self.assertEqual(s.recv(100), b"", bad)
        with socket.create_connection((HOST, t.port), timeout=5) as s:  # half a header, then silence
            s.sendall(b"PROXY TCP4 1.2.")
            start = time.monotonic()
            self.assertEqual(s.recv(100), b"")
            self.assertLess(time.monotonic() - start, 4)
        deadline, count = time.monotonic() + 5, 0.0
        while count < 4 and time.monotonic() < deadline:  # counted a moment after the close
            metrics = http_request(HOST, self.admin, "GET", "/metrics").body.decode()
            line = [l for l in metrics.splitlines()
                    if l.startswith("tether_proxy_protocol_errors_total{")]
            self.assertEqual(len(line), 1, metrics)
            count = float(line[0].rsplit(" ", 1)[1])
        self.assertEqual(count, 4.0)
        self.assertEqual(sum(b.stats()["requests"] for b in self.backends), 3)  # the /stats only
        self.assertIn("PROXY protocol header from 127.0.0.1 refused", t.logs())

    def test_proxy_v2_before_tls(self):
        pki = tempfile.mkdtemp(prefix="tether-pp-tls-")
        self.addCleanup(shutil.rmtree, pki, True)
        make_ca(pki)
        make_leaf(pki, "a", ["localhost"])
        tls = (f"proxy_protocol: true\ntls:\n  certificate: {pki}/a.pem\n"
               f"  private_key: {pki}/a.key\n")
        t = self.start(listen=tls)
        ctx = ssl.create_default_context(cafile=os.path.join(pki, "ca.pem"))
        plain_t = self.placements(t.port, proxy_v2, wrap=ctx)
        self.assertGreater(len(set(plain_t.values())), 1)
        _, head = request_via(t.port, proxy_v1("203.0.113.78"), wrap=ctx)
        self.assertEqual(header_value(head, "X-Real-IP"), ["203.0.113.78"])
        self.assertEqual(header_value(head, "X-Forwarded-Proto"), ["https"])

    def test_connections_per_ip_count_the_proxy_source_not_the_balancer(self):
        # Every connection comes from 127.0.0.1 (the "L4 balancer"); the PROXY header's
        # source is what max_connections_per_ip counts: each source has its own budget.
        t = self.start(admin=True, listen={"proxy_protocol": True},
                       limits={"max_connections_per_ip": 2})

        def open_from(src: str, preamble=proxy_v1) -> socket.socket:
            s = socket.create_connection((HOST, t.port), timeout=5)
            s.sendall(preamble(src) + b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            return s

        held = []
        for src, preamble in (("203.0.113.1", proxy_v1), ("203.0.113.1", proxy_v2),
                              ("203.0.113.2", proxy_v1), ("203.0.113.2", proxy_v2)):
            s = open_from(src, preamble)
            self.assertIn(b"200 OK", s.recv(4096), src)  # answered: counted before the next
            held.append(s)
        for src in ("203.0.113.1", "203.0.113.2"):  # a third from either source: closed
            extra = open_from(src)
            try:
                self.assertEqual(extra.recv(100), b"", src)
            except ConnectionResetError:
                pass
            extra.close()
        for s in held:  # the held ones still work, and a new source is served
            s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            self.assertIn(b"200 OK", s.recv(4096))
        self.assertEqual(request_via(t.port, proxy_v2("203.0.113.3"))[0] in ("s1", "s2", "s3"),
                         True)
        held.pop(0).close()  # one of 203.0.113.1's: its slot comes back once tether has
        # seen the close, waited for here (a new connection tried before that would be
        # refused, and counted)
        active = re.compile(rf'tether_connections_active\{{listener="{HOST}:{t.port}"\}} 3\b')
        deadline = time.monotonic() + 10
        while not active.search(http_request(HOST, self.admin, "GET", "/metrics").body.decode()):
            self.assertLess(time.monotonic(), deadline, "tether did not see the close")
            time.sleep(0.05)
        with open_from("203.0.113.1") as s:
            self.assertIn(b"200 OK", s.recv(4096), "the slot did not come back")
        for s in held:
            s.close()
        metrics = http_request(HOST, self.admin, "GET", "/metrics").body.decode()
        self.assertRegex(metrics,
                         r'tether_connections_refused_total\{reason="max_connections_per_ip"\} 2\b')

    def test_trusted_peer_xff_used_for_ip_hash(self):
        t = self.start(trusted_proxies=["127.0.0.0/8"])
        by_xff = self.placements(t.port, lambda ip: b"",
                                 headers_for=lambda ip: [("X-Forwarded-For", f"{ip}, 127.0.0.9")])
        self.assertGreater(len(set(by_xff.values())), 1, "XFF from a trusted peer not used")
        _, head = request_via(t.port, b"", headers=[("X-Forwarded-For", "203.0.113.5, 127.0.0.9")])
        self.assertEqual(header_value(head, "X-Real-IP"), ["203.0.113.5"])
        self.assertEqual(header_value(head, "X-Forwarded-For"), ["203.0.113.5, 127.0.0.9, 127.0.0.1"])

    def test_forged_xff_from_untrusted_peer_ignored(self):
        t = self.start(trusted_proxies=["10.0.0.0/8"])
        by_xff = self.placements(t.port, lambda ip: b"",
                                 headers_for=lambda ip: [("X-Forwarded-For", ip)])
        self.assertEqual(len(set(by_xff.values())), 1, "a forged XFF moved the client")
        _, head = request_via(t.port, b"", headers=[("X-Forwarded-For", "203.0.113.5")])
        self.assertEqual(header_value(head, "X-Real-IP"), ["127.0.0.1"])
        # The chain is passed on (nginx's $proxy_add_x_forwarded_for), the peer appended.
        self.assertEqual(header_value(head, "X-Forwarded-For"), ["203.0.113.5, 127.0.0.1"])

    def test_same_placement_for_xff_and_proxy_header(self):
        # The key of ip_hash is the address, whichever way it was learnt.
        t1 = self.start(trusted_proxies=["127.0.0.0/8"])
        by_xff = self.placements(t1.port, lambda ip: b"",
                                 headers_for=lambda ip: [("X-Forwarded-For", ip)])
        port = free_port()
        names = [(b.name, b.port) for b in self.backends]
        t2 = Tether(tether_config(names, port, workers=2, upstream=IP_HASH,
                                  listen={"proxy_protocol": True}), ports=[port])
        self.addCleanup(t2.close)
        by_proxy = self.placements(t2.port, proxy_v1)
        self.assertEqual(by_xff, by_proxy)


if __name__ == "__main__":
    unittest.main()
