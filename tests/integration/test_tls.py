"""TLS termination: https and wss through tether to plain demo backends, SNI, protocol
versions, refused handshakes (plain HTTP, wrong CA, TLS 1.1, silence), certificate renewal by
SIGHUP under an open wss tunnel, a bad certificate refused on reload, graceful stop of a wss
tunnel. Certificates are made by the test with the openssl command line (tls_certs.py)."""

from __future__ import annotations

import base64
import os
import re
import shutil
import socket
import ssl
import tempfile
import time
import unittest

from harness import (HOST, Backend, HttpConnection, Tether, WebSocket, _Reader, build_request,
                     free_port, free_ports, http_request, read_response, tether_check, tether_config)
from tls_certs import PkiTestCase, make_ca, make_leaf


def client_context(ca: str, **versions) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca)
    for key, value in versions.items():
        setattr(ctx, key, value)
    return ctx


class TlsConnection(HttpConnection):
    """HttpConnection over TLS (the harness's reader works on an SSLSocket)."""

    def __init__(self, port: int, ctx: ssl.SSLContext, server_hostname: str = "localhost",
                 timeout: float = 10.0):
        super().__init__(HOST, port, timeout)
        self.sock = ctx.wrap_socket(self.sock, server_hostname=server_hostname)
        self.reader = _Reader(self.sock)


def wss_connect(port: int, ctx: ssl.SSLContext, path: str = "/", hostname: str = "localhost",
                timeout: float = 10.0) -> WebSocket:
    key = base64.b64encode(os.urandom(16)).decode()
    raw = socket.create_connection((HOST, port), timeout=timeout)
    sock = ctx.wrap_socket(raw, server_hostname=hostname)
    sock.sendall(build_request("GET", path, [
        ("Host", f"{hostname}:{port}"), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13")]))
    reader = _Reader(sock)
    resp = read_response(reader, "GET", timeout)
    if resp.status != 101:
        raise ValueError(resp)
    return WebSocket(sock, reader, resp, timeout)


def tls_listen(tls: str, extra: str = "") -> str:
    """The listen-entry override (a YAML snippet) for a `tls` block."""
    return "tls:\n" + "".join("  " + line + "\n" for line in tls.strip("\n").splitlines()) + extra


def metric(t_admin_port: int, name: str, **labels) -> float:
    text = http_request(HOST, t_admin_port, "GET", "/metrics").body.decode()
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_metric(admin_port: int, name: str, want: float, timeout: float = 5, **labels) -> float:
    """The metric once it reaches `want` (a connection is closed a moment before it is
    counted: the deadline closes the socket first), or its value after `timeout`."""
    deadline = time.monotonic() + timeout
    while (got := metric(admin_port, name, **labels)) < want and time.monotonic() < deadline:
        time.sleep(0.05)
    return got


class TlsTestCase(PkiTestCase):
    pki_prefix = "tether-tls-"

    @classmethod
    def make_certificates(cls):
        make_ca(cls.pki)
        make_leaf(cls.pki, "a", ["a.test", "localhost"], serial=11)
        make_leaf(cls.pki, "b", ["b.test", "*.b.test"], serial=12)
        make_ca(cls.pki, "other", "another CA")
        make_leaf(cls.pki, "stranger", ["localhost"], ca="other", serial=13)
        cls.ca = os.path.join(cls.pki, "ca.pem")

    def start(self, tls: str, workers: int = 2, **overrides) -> tuple[Tether, int]:
        self.backend = Backend("s1")
        self.addCleanup(self.backend.__exit__, None, None, None)
        port, admin = free_ports(2)
        overrides.setdefault("timeouts", "client_header: 2s")
        cfg = tether_config([("s1", self.backend.port)], port, workers=workers,
                            listen=tls_listen(tls), admin={"address": f"{HOST}:{admin}"},
                            **overrides)
        t = Tether(cfg, ports=[port, admin])
        self.addCleanup(t.close)
        return t, t.ports[1]  # admin's (moved if it was taken)

    def one_cert(self, name: str = "a", extra: str = "") -> str:
        return f"certificate: {self.path(name + '.pem')}\nprivate_key: {self.path(name + '.key')}\n" + extra

    def wait_log(self, t: Tether, pattern: str, timeout: float = 10):
        """Until a line of t's log matches `pattern`; fails the test after `timeout`."""
        deadline = time.monotonic() + timeout
        while not re.search(pattern, t.logs()):
            if time.monotonic() > deadline:
                self.fail(f"no log line /{pattern}/ in:\n{t.logs()}")
            time.sleep(0.05)


class Termination(TlsTestCase):
    def test_https_keepalive_forwarded_proto_and_echo(self):
        t, _ = self.start(self.one_cert())
        ctx = client_context(self.ca)
        with TlsConnection(t.port, ctx) as c:
            self.assertEqual(c.sock.version() in ("TLSv1.3", "TLSv1.2"), True)
            self.assertEqual(c.sock.selected_alpn_protocol(), None)  # none offered
            for _ in range(3):
                r = c.request("GET", "/")
                self.assertEqual(r.status, 200)
                self.assertEqual(r.body, b"hello from s1\n")
            head = c.request("GET", "/headers").body.decode()
            self.assertIn("X-Forwarded-Proto: https", head)
            body = os.urandom(200_000)
            r = c.request("POST", "/echo", body=body)
            self.assertEqual(r.status, 200)
            self.assertEqual(r.body, body)
            r = c.request("GET", "/bytes?n=3000000&mode=chunked")
            self.assertEqual(len(r.body), 3_000_000)
        self.assertEqual(self.backend.stats()["connections"] >= 1, True)

    def test_alpn_http11_selected(self):
        t, _ = self.start(self.one_cert())
        ctx = client_context(self.ca)
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        with TlsConnection(t.port, ctx) as c:
            self.assertEqual(c.sock.selected_alpn_protocol(), "http/1.1")
            self.assertEqual(c.request("GET", "/").status, 200)

    def test_wss_echo_and_whoami(self):
        t, _ = self.start(self.one_cert())
        ws = wss_connect(t.port, client_context(self.ca), "/chat")
        ws.send_text("whoami")
        self.assertEqual(ws.recv_text(), "s1")
        big = os.urandom(300_000)
        ws.send_binary(big)
        self.assertEqual(ws.recv(), (WebSocket.BINARY, big))
        for i in range(200):
            ws.send_text(f"m{i}")
        for i in range(200):
            self.assertEqual(ws.recv_text(), f"m{i}")
        self.assertEqual(ws.close(), 1000)

    def test_graceful_stop_closes_wss_with_1001(self):
        t, _ = self.start(self.one_cert(), timeouts="client_header: 2s\nshutdown: 4s",
                          upstream="drain:\n  close_spread: 0s")
        ws = wss_connect(t.port, client_context(self.ca))
        ws.send_text("hi")
        self.assertEqual(ws.recv_text(), "hi")
        t.signal(15)
        op, _ = ws.recv(timeout=5)
        self.assertEqual(op, WebSocket.CLOSE)
        self.assertEqual(ws.close_code, 1001)
        self.assertEqual(t.wait(6), 0)
        ws.abort()


class Sni(TlsTestCase):
    def test_sni_picks_certificate_default_is_first(self):
        tls = (f"certificates:\n  - certificate: {self.path('a.pem')}\n    private_key: {self.path('a.key')}\n"
               f"  - certificate: {self.path('b.pem')}\n    private_key: {self.path('b.key')}\n")
        t, _ = self.start(tls)
        ctx = client_context(self.ca)
        for name, serial in (("a.test", 11), ("b.test", 12), ("x.b.test", 12), ("localhost", 11)):
            with TlsConnection(t.port, ctx, server_hostname=name) as c:
                self.assertEqual(int(c.sock.getpeercert()["serialNumber"], 16), serial, name)
                self.assertEqual(c.request("GET", "/").status, 200)
        # An unknown name gets the default (first) certificate.
        raw = ssl.create_default_context()
        raw.check_hostname, raw.verify_mode = False, ssl.CERT_NONE
        with TlsConnection(t.port, raw, server_hostname="unknown.example") as c:
            der = c.sock.getpeercert(binary_form=True)
            self.assertIn(b"a.test", der)


class Refusals(TlsTestCase):
    def test_tls11_refused(self):
        t, admin = self.start(self.one_cert())
        ctx = client_context(self.ca)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        try:
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        except ssl.SSLError:
            self.skipTest("this OpenSSL cannot offer TLS 1.1 at all")
        with self.assertRaises((ssl.SSLError, ConnectionError)):
            TlsConnection(t.port, ctx)
        self.assertEqual(wait_metric(admin, "tether_tls_handshakes_total", 1, result="failed"), 1.0)
        with TlsConnection(t.port, client_context(self.ca)) as c:  # still serving
            self.assertEqual(c.request("GET", "/").status, 200)
        self.assertRegex(t.logs(), r"tls handshake with 127\.0\.0\.1 failed on .*: .*protocol")

    def test_tls13_only_refuses_tls12_client(self):
        t, admin = self.start(self.one_cert("a", "protocols: [TLSv1.3]\n"))
        with self.assertRaises((ssl.SSLError, ConnectionError)):
            TlsConnection(t.port, client_context(self.ca, maximum_version=ssl.TLSVersion.TLSv1_2))
        with TlsConnection(t.port, client_context(self.ca)) as c:
            self.assertEqual(c.sock.version(), "TLSv1.3")
            self.assertEqual(c.request("GET", "/").status, 200)
        self.assertEqual(wait_metric(admin, "tether_tls_handshakes_total", 1, result="failed"), 1.0)
        self.assertEqual(wait_metric(admin, "tether_tls_handshakes_total", 1, result="ok"), 1.0)

    def test_tls12_only_with_ciphers(self):
        t, _ = self.start(self.one_cert("a", "protocols: [TLSv1.2]\nciphers: ECDHE-ECDSA-AES128-GCM-SHA256\n"))
        with TlsConnection(t.port, client_context(self.ca)) as c:
            self.assertEqual(c.sock.version(), "TLSv1.2")
            self.assertEqual(c.sock.cipher()[0], "ECDHE-ECDSA-AES128-GCM-SHA256")
            self.assertEqual(c.request("GET", "/").status, 200)

    def test_plain_http_to_tls_port_answered_400_and_closed(self):
        t, admin = self.start(self.one_cert())
        with socket.create_connection((HOST, t.port), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        self.assertTrue(data.startswith(b"HTTP/1.1 400 "), data)
        self.assertIn(b"plain HTTP request was sent to HTTPS port", data)
        self.assertEqual(wait_metric(admin, "tether_tls_handshakes_total", 1, result="plain_http"), 1.0)
        self.assertEqual(self.backend.stats()["requests"], 1)  # this /stats only

    def test_wrong_ca_client_aborts_counted(self):
        t, admin = self.start(self.one_cert("stranger"))
        with self.assertRaises(ssl.SSLCertVerificationError):
            TlsConnection(t.port, client_context(self.ca))
        self.assertEqual(wait_metric(admin, "tether_tls_handshakes_total", 1, result="failed"), 1.0)
        self.assertRegex(t.logs(), r"tls handshake with .* failed .*(unknown ca|bad certificate|alert)")

    def test_silent_client_closed_at_client_header(self):
        t, admin = self.start(self.one_cert(), timeouts="client_header: 1s")
        with socket.create_connection((HOST, t.port), timeout=5) as s:
            start = time.monotonic()
            self.assertEqual(s.recv(10), b"")
            self.assertLess(time.monotonic() - start, 4)
        with socket.create_connection((HOST, t.port), timeout=5) as s:  # half a ClientHello
            s.sendall(b"\x16\x03\x01\x02\x00\x01")
            self.assertEqual(s.recv(10), b"")
        self.assertEqual(wait_metric(admin, "tether_tls_handshakes_total", 2, result="timeout"), 2.0)


class Reload(TlsTestCase):
    def test_renewal_by_sighup_keeps_open_wss_and_refuses_bad_cert(self):
        live = tempfile.mkdtemp(prefix="tether-live-")
        self.addCleanup(shutil.rmtree, live, True)
        cert, key = os.path.join(live, "cert.pem"), os.path.join(live, "key.pem")
        shutil.copy(self.path("a.pem"), cert)
        shutil.copy(self.path("a.key"), key)
        t, admin = self.start(f"certificate: {cert}\nprivate_key: {key}\n")
        ctx = client_context(self.ca)
        ws = wss_connect(t.port, ctx)
        ws.send_text("before")
        self.assertEqual(ws.recv_text(), "before")
        with TlsConnection(t.port, ctx) as c:
            self.assertEqual(int(c.sock.getpeercert()["serialNumber"], 16), 11)
        # Renewal: a new certificate for the same name, then SIGHUP.
        make_leaf(self.pki, "renewed", ["a.test", "localhost"], serial=21)
        shutil.copy(self.path("renewed.pem"), cert)
        shutil.copy(self.path("renewed.key"), key)
        t.signal(1)
        self.wait_log(t, r"reloaded .* \(generation 2\)")
        with TlsConnection(t.port, ctx) as c:
            self.assertEqual(int(c.sock.getpeercert()["serialNumber"], 16), 21)
            self.assertEqual(c.request("GET", "/").status, 200)
        ws.send_text("after renewal")
        self.assertEqual(ws.recv_text(), "after renewal")
        # A broken key: refused, the running certificate stays.
        with open(key, "w") as f:
            f.write("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
        t.signal(1)
        self.wait_log(t, r"reload refused, the running certificates stay: listen\[0\] .* tls: private key .*key\.pem")
        with TlsConnection(t.port, ctx) as c:
            self.assertEqual(int(c.sock.getpeercert()["serialNumber"], 16), 21)
        ws.send_text("still here")
        self.assertEqual(ws.recv_text(), "still here")
        self.assertEqual(ws.close(), 1000)
        self.assertTrue(t.running())

    def test_handshake_failing_after_a_reload_is_logged(self):
        """A handshake that began before a reload and fails after it: its log line names the
        listener from the settings it began with. The session once read them from the
        runtime the worker had dropped at the reload (freed: ASan's heap-use-after-free,
        seen in test_cross_thread; a normal build could log garbage or crash)."""
        t, admin = self.start(self.one_cert(), workers=1, timeouts="client_header: 10s")
        ctx = client_context(self.ca)
        with socket.create_connection((HOST, t.port), timeout=10) as s:
            # One worker accepts in order: s's handshake waits for its first bytes when
            # this request is answered.
            with TlsConnection(t.port, ctx) as c:
                self.assertEqual(c.request("GET", "/").status, 200)
            t.signal(1)  # the same config: a new runtime all the same
            self.wait_log(t, r"reloaded .* \(generation 2\)")
            # A request served after the reload: the (one) worker has the new runtime.
            with TlsConnection(t.port, ctx) as c:
                self.assertEqual(c.request("GET", "/").status, 200)
            s.sendall(b"\x00not TLS\r\n")
            self.assertEqual(s.recv(10), b"")
        self.assertEqual(wait_metric(admin, "tether_tls_handshakes_total", 1, result="not_tls"), 1.0)
        self.wait_log(t, r"tls handshake with 127\.0\.0\.1 failed on " +
                      re.escape(f"{HOST}:{t.port}") + r": not a TLS handshake")
        self.assertTrue(t.running())


class Check(TlsTestCase):
    def test_check_reports_missing_and_mismatched_files(self):
        b = free_port()
        base = tether_config([("s1", b)], free_port(), listen=tls_listen(self.one_cert()))
        self.assertEqual(tether_check(base)[0], 0)
        mismatched = tether_config([("s1", b)], free_port(), listen=tls_listen(
            f"certificate: {self.path('a.pem')}\nprivate_key: {self.path('b.key')}\n"))
        code, _, err = tether_check(mismatched)
        self.assertEqual(code, 1)
        self.assertRegex(err, r"listen\[0\] .* tls: private key .*b\.key does not match certificate .*a\.pem")
        missing = tether_config([("s1", b)], free_port(), listen=tls_listen(
            f"certificate: {self.path('nope.pem')}\nprivate_key: {self.path('a.key')}\n"))
        code, _, err = tether_check(missing)
        self.assertEqual(code, 1)
        self.assertIn("nope.pem", err)


if __name__ == "__main__":
    unittest.main()
