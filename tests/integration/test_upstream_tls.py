"""TLS to backends (`upstreams.X.tls`): https and wss backends written on Python's ssl module
(tls_backend.py), certificates made by the test with the openssl command line. Verification
succeeding (CA file, server_name as SNI and checked name; the server's IP when no name is
given), failing (another CA, a wrong name: 502, a log line naming the reason, the failure
counted, tether unharmed), verify off, mTLS (a backend that requires a client certificate:
refused without one, accepted with one), kept-alive TLS connections reused, sessions resumed
on new connections, a WebSocket echo through a TLS backend from ws:// and wss:// clients,
`tether -t` and SIGHUP with bad files; 2 workers resuming from the one session cache at once."""

from __future__ import annotations

import json
import os
import ssl
import threading
import time
import unittest

from harness import (HOST, HttpConnection, Tether, WebSocket, free_port, free_ports,
                     http_request, tether_check, tether_config)
from test_tls import client_context, metric, tls_listen, wss_connect
from tls_backend import TlsBackend
from tls_certs import PkiTestCase, make_ca, make_leaf


def wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


class UpstreamTlsCase(PkiTestCase):
    pki_prefix = "tether-uptls-"

    @classmethod
    def make_certificates(cls):
        make_ca(cls.pki)
        make_leaf(cls.pki, "backend", ["backend.test"], serial=31, ips=["127.0.0.1"])
        make_ca(cls.pki, "other", "another CA")
        make_ca(cls.pki, "clients", "client CA")
        make_leaf(cls.pki, "tether-client", ["tether.client"], ca="clients", serial=32,
                  usage="clientAuth")
        make_leaf(cls.pki, "front", ["localhost"], serial=33)
        with open(os.path.join(cls.pki, "garbage.pem"), "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")

    def backend_context(self, require_client_cert: bool = False) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.path("backend.pem"), self.path("backend.key"))
        if require_client_cert:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(self.path("clients.pem"))
        return ctx

    def config_for(self, tls: dict, upstream: dict | None = None, **overrides) -> str:
        up = {"tls": tls}
        up.update(upstream or {})
        return tether_config([("s1", self.backend.port)], self.port, upstream=up,
                             admin={"address": f"{HOST}:{self.admin}"}, **overrides)

    def start(self, tls: dict, backend: TlsBackend | None = None, upstream: dict | None = None,
              **overrides) -> Tether:
        self.backend = backend or TlsBackend(self.backend_context())
        self.addCleanup(self.backend.stop)
        self.port, self.admin = free_ports(2)
        t = Tether(self.config_for(tls, upstream, **overrides), ports=[self.port, self.admin])
        self.addCleanup(t.close)
        self.port, self.admin = t.ports  # moved if one was taken (config_for follows)
        return t

    def handshakes(self, result: str) -> float:
        return metric(self.admin, "tether_upstream_tls_handshakes_total", upstream="u",
                      result=result)


class Verification(UpstreamTlsCase):
    def test_verified_backend_keepalive_reuses_the_tls_connection(self):
        t = self.start({"ca": self.path("ca.pem"), "server_name": "backend.test"})
        with HttpConnection(HOST, t.port) as c:
            answers = [c.request("GET", f"/r{i}").json() for i in range(3)]
        for i, a in enumerate(answers):
            self.assertIn(a["tls"], ("TLSv1.3", "TLSv1.2"))
            self.assertEqual(a["sni"], "backend.test")
            self.assertEqual((a["conn"], a["req"]), (1, i + 1))  # one kept-alive connection
        self.assertEqual(self.backend.connections, 1)
        self.assertEqual(self.handshakes("full"), 1.0)
        self.assertEqual(self.handshakes("failed"), 0.0)

    def test_new_connections_resume_the_session(self):
        t = self.start({"ca": self.path("ca.pem"), "server_name": "backend.test"},
                       upstream={"keepalive": 0})
        answers = [http_request(HOST, t.port, "GET", "/").json() for _ in range(3)]
        self.assertEqual([a["conn"] for a in answers], [1, 2, 3])
        self.assertFalse(answers[0]["resumed"])
        self.assertTrue(answers[2]["resumed"], answers)
        self.assertGreaterEqual(self.handshakes("resumed"), 1.0)

    def test_both_workers_resume_from_one_session_cache(self):
        # workers: 2 and clients in parallel, each request on a new upstream connection: the
        # process-wide session cache is read and written by both workers at once (under
        # `tools/dev.sh test --tsan`, ThreadSanitizer watches that).
        t = self.start({"ca": self.path("ca.pem"), "server_name": "backend.test"},
                       upstream={"keepalive": 0}, workers=2)
        self.assertFalse(http_request(HOST, t.port, "GET", "/").json()["resumed"])
        answers, lock = [], threading.Lock()

        def client():
            for _ in range(10):
                a = http_request(HOST, t.port, "GET", "/").json()
                with lock:
                    answers.append(a)

        threads = [threading.Thread(target=client) for _ in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        self.assertEqual(len(answers), 40)
        self.assertEqual(len({a["conn"] for a in answers}), 40)  # no connection reused
        # The first answer came after tether read the backend's ticket (sent before it), so
        # every later connection finds a session; each resumes with a copy of its own, so a
        # connection ended without close_notify spoils nobody else's (OpenSSL then marks its
        # session not resumable: with the cached object shared, 2-5 of 40 made a full
        # handshake).
        flags = [a["resumed"] for a in answers]
        self.assertEqual(sum(flags), 40, flags)
        self.assertEqual(self.handshakes("failed"), 0.0)
        self.assertEqual(self.handshakes("resumed"), 40.0)

    def test_without_server_name_the_ip_address_is_checked_and_no_sni_sent(self):
        t = self.start({"ca": self.path("ca.pem")})
        a = http_request(HOST, t.port, "GET", "/").json()
        self.assertIsNone(a["sni"])
        self.assertIsNotNone(a["tls"])

    def test_another_ca_is_refused_with_502_a_log_line_and_a_count(self):
        t = self.start({"ca": self.path("other.pem"), "server_name": "backend.test"})
        r = http_request(HOST, t.port, "GET", "/")
        self.assertEqual(r.status, 502)
        self.assertTrue(wait_for(lambda: "TLS handshake failed" in t.logs()), t.logs())
        self.assertIn("certificate verify failed", t.logs())
        self.assertIn("server 's1'", t.logs())
        self.assertEqual(self.handshakes("failed"), 1.0)
        self.assertTrue(t.running())

    def test_a_wrong_server_name_is_refused(self):
        t = self.start({"ca": self.path("ca.pem"), "server_name": "wrong.test"})
        r = http_request(HOST, t.port, "GET", "/")
        self.assertEqual(r.status, 502)
        self.assertTrue(wait_for(lambda: "hostname mismatch" in t.logs()), t.logs())
        self.assertEqual(self.handshakes("failed"), 1.0)

    def test_verify_off_accepts_any_certificate(self):
        t = self.start({"verify": False, "server_name": "backend.test"})
        self.assertEqual(http_request(HOST, t.port, "GET", "/").status, 200)

    def test_a_plain_backend_fails_the_handshake_cleanly(self):
        from harness import Backend
        with Backend("plain") as plain:
            t = self.start({"ca": self.path("ca.pem")})
            self.backend.port = plain.port
            t.reload(self.config_for({"ca": self.path("ca.pem")}))
            self.assertTrue(wait_for(lambda: "reloaded" in t.logs()), t.logs())
            self.assertEqual(http_request(HOST, t.port, "GET", "/").status, 502)
            self.assertTrue(wait_for(lambda: "TLS handshake failed" in t.logs()), t.logs())
            self.assertTrue(t.running())


class MutualTls(UpstreamTlsCase):
    def test_backend_requiring_a_client_certificate(self):
        backend = TlsBackend(self.backend_context(require_client_cert=True))
        base = {"ca": self.path("ca.pem"), "server_name": "backend.test"}
        t = self.start(base, backend=backend)
        self.assertEqual(http_request(HOST, t.port, "GET", "/").status, 502)
        self.assertTrue(wait_for(lambda: "TLS" in t.logs() and "s1" in t.logs()), t.logs())
        self.assertTrue(wait_for(lambda: backend.handshake_failures or backend.connections))
        with_cert = dict(base, certificate=self.path("tether-client.pem"),
                         private_key=self.path("tether-client.key"))
        t.reload(self.config_for(with_cert))
        self.assertTrue(wait_for(lambda: "reloaded" in t.logs()), t.logs())
        a = http_request(HOST, t.port, "GET", "/").json()
        self.assertEqual(a["client_cert"], "tether.client")


class Tunnels(UpstreamTlsCase):
    def test_websocket_echo_through_a_tls_backend(self):
        t = self.start({"ca": self.path("ca.pem"), "server_name": "backend.test"})
        ws = WebSocket.connect(HOST, t.port, "/ws")
        try:
            info = json.loads(ws.response.header("X-Backend-Info"))
            self.assertIsNotNone(info["tls"])
            for size in (5, 300, 70000):
                payload = ("x" * size)
                ws.send_text(payload)
                self.assertEqual(ws.recv_text(), payload)
        finally:
            ws.close()

    def test_wss_client_to_tls_backend(self):
        front = tls_listen(f"certificate: {self.path('front.pem')}\n"
                           f"private_key: {self.path('front.key')}\n")
        t = self.start({"ca": self.path("ca.pem"), "server_name": "backend.test"}, listen=front)
        ws = wss_connect(t.port, client_context(self.path("ca.pem")), "/ws")
        try:
            for text in ("hello", "y" * 20000):
                ws.send_text(text)
                self.assertEqual(ws.recv_text(), text)
        finally:
            ws.close()


class Files(UpstreamTlsCase):
    def config_with(self, tls_yaml: str) -> str:
        return tether_config([("s1", 1)], free_port(), upstream="tls:\n" + "".join(
            "  " + line + "\n" for line in tls_yaml.strip("\n").splitlines()) +
            "servers:\n  - {name: s1, address: 127.0.0.1:1}\n")

    def test_check_loads_the_files(self):
        code, _, err = tether_check(self.config_with(f"ca: {self.path('ca.pem')}"))
        self.assertEqual(code, 0, err)
        code, _, err = tether_check(self.config_with(f"ca: {self.path('garbage.pem')}"))
        self.assertEqual(code, 1)
        self.assertIn("upstreams.u.tls: ca " + self.path("garbage.pem"), err)
        code, _, err = tether_check(self.config_with(
            f"certificate: {self.path('tether-client.pem')}\nprivate_key: {self.path('backend.key')}"))
        self.assertEqual(code, 1)
        self.assertIn("does not match", err)
        code, _, err = tether_check(self.config_with(f"ca: {self.path('missing.pem')}"))
        self.assertEqual(code, 1)
        self.assertRegex(err, r"tether\.yaml:\d+:\d+: 'upstreams\.u\.tls\.ca': cannot read")

    def test_reload_with_a_bad_ca_is_refused_and_the_old_one_stays(self):
        good = {"ca": self.path("ca.pem"), "server_name": "backend.test"}
        t = self.start(good, upstream={"keepalive": 0})
        self.assertEqual(http_request(HOST, t.port, "GET", "/").status, 200)
        t.reload(self.config_for(dict(good, ca=self.path("garbage.pem")), {"keepalive": 0}))
        self.assertTrue(wait_for(lambda: "reload refused" in t.logs()), t.logs())
        self.assertIn("upstreams.u.tls: ca", t.logs())
        self.assertEqual(http_request(HOST, t.port, "GET", "/").status, 200)
        # A file that loads is taken: another CA now refuses the backend.
        t.reload(self.config_for(dict(good, ca=self.path("other.pem")), {"keepalive": 0}))
        self.assertTrue(wait_for(lambda: "reloaded" in t.logs()), t.logs())
        self.assertEqual(http_request(HOST, t.port, "GET", "/").status, 502)


if __name__ == "__main__":
    unittest.main()
