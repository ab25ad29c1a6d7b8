"""TLS edge features, checked with the `openssl s_client` command line as an operator would:
OCSP stapling from a response file per certificate (chosen by SNI, reloaded on SIGHUP, a bad
file refused by `tether -t` and by a reload), and session tickets whose keys rotate on reload
(a ticket resumes across one reload, not two; resumption on every worker, per SNI certificate,
never across listeners). Certificates and OCSP responses are made by the test with openssl."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest

from harness import HOST, Backend, Tether, free_port, free_ports, tether_check, tether_config
from test_tls import TlsTestCase, tls_listen
from tls_certs import make_leaf

REQUEST = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"


def make_ocsp_response(d: str, name: str, serial: int, status: str = "V", out: str = "") -> str:
    """A DER OCSP response for leaf NAME.crt (serial `serial`) signed by the test CA, made by
    `openssl ocsp` from an index file saying `status` (V valid, R revoked)."""
    index = os.path.join(d, f"{name}.index")
    revoked = "260101000000Z" if status == "R" else ""
    with open(index, "w") as f:
        f.write(f"{status}\t301231000000Z\t{revoked}\t{serial:02X}\tunknown\t/CN={name}\n")
    out = out or os.path.join(d, f"{name}.ocsp")
    subprocess.run(["openssl", "ocsp", "-index", index, "-rsigner", "ca.pem", "-rkey", "ca.key",
                    "-CA", "ca.pem", "-issuer", "ca.pem", "-cert", f"{name}.crt",
                    "-respout", out, "-ndays", "1"],
                   cwd=d, check=True, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    return out


def s_client(port: int, *args: str, timeout: float = 20) -> str:
    """`openssl s_client` through one request (Connection: close, read to the end); its output."""
    done = subprocess.run(["openssl", "s_client", "-connect", f"{HOST}:{port}", "-ign_eof", *args],
                          input=REQUEST, capture_output=True, timeout=timeout)
    return done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")


def reused(output: str) -> bool:
    """Whether s_client resumed ("Reused, TLSv1.3, ...") rather than did a full handshake."""
    if re.search(r"^Reused, ", output, re.M):
        return True
    if re.search(r"^New, ", output, re.M):
        return False
    raise AssertionError("no handshake in s_client's output:\n" + output)


class OcspStapling(TlsTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        make_leaf(cls.pki, "c", ["c.test"], serial=14)
        make_ocsp_response(cls.pki, "a", 11)
        make_ocsp_response(cls.pki, "b", 12)

    def certs(self, **ocsp) -> str:
        text = "certificates:\n"
        for name in ("a", "b", "c"):
            text += f"  - certificate: {self.path(name + '.pem')}\n"
            text += f"    private_key: {self.path(name + '.key')}\n"
            if name in ocsp:
                text += f"    ocsp_response: {ocsp[name]}\n"
        return text

    def status(self, port: int, name: str, *args: str) -> str:
        out = s_client(port, "-servername", name, "-status", "-CAfile", self.ca, *args)
        self.assertIn("HTTP/1.1 200 OK", out)
        return out

    def test_each_sni_certificate_staples_its_own_response(self):
        t, _ = self.start(self.certs(a=self.path("a.ocsp"), b=self.path("b.ocsp")))
        for version in ("-tls1_3", "-tls1_2"):
            a = self.status(t.port, "a.test", version)
            self.assertIn("OCSP Response Status: successful", a)
            self.assertIn("Serial Number: 0B", a)
            self.assertIn("Cert Status: good", a)
            b = self.status(t.port, "b.test", version)
            self.assertIn("OCSP Response Status: successful", b)
            self.assertIn("Serial Number: 0C", b)
            self.assertNotIn("Serial Number: 0B", b)
            c = self.status(t.port, "c.test", version)  # no ocsp_response: nothing stapled
            self.assertIn("OCSP response: no response sent", c)
            self.assertNotIn("OCSP Response Status", c)

    def test_without_the_key_nothing_is_stapled(self):
        t, _ = self.start(self.one_cert())
        out = self.status(t.port, "localhost")
        self.assertIn("OCSP response: no response sent", out)

    def test_reload_picks_up_a_renewed_response_and_refuses_a_bad_one(self):
        live = tempfile.mkdtemp(prefix="tether-ocsp-")
        self.addCleanup(shutil.rmtree, live, True)
        staple = os.path.join(live, "a.ocsp")
        shutil.copy(self.path("a.ocsp"), staple)
        t, _ = self.start(self.one_cert("a", f"ocsp_response: {staple}\n"))
        self.assertIn("Cert Status: good", self.status(t.port, "localhost"))
        # A renewed response (the responder now says revoked), then SIGHUP.
        make_ocsp_response(self.pki, "a", 11, status="R", out=staple)
        t.signal(1)
        self.wait_log(t, r"reloaded .* \(generation 2\)")
        self.assertIn("Cert Status: revoked", self.status(t.port, "localhost"))
        self.assertRegex(t.logs(), r"OCSP response .*a\.ocsp: says certificate .*a\.pem is REVOKED")
        # Not an OCSP response: the reload is refused, the stapled one stays.
        with open(staple, "wb") as f:
            f.write(b"not DER at all")
        t.signal(1)
        self.wait_log(t, r"reload refused, the running certificates stay: listen\[0\] .* tls: "
                          r"OCSP response .*a\.ocsp: not a DER OCSP response")
        self.assertIn("Cert Status: revoked", self.status(t.port, "localhost"))
        self.assertTrue(t.running())

    def test_check_refuses_unreadable_foreign_and_garbage_responses(self):
        b = free_port()

        def check(ocsp: str) -> tuple[int, str]:
            cfg = tether_config([("s1", b)], free_port(),
                                listen=tls_listen(self.one_cert("a", f"ocsp_response: {ocsp}\n")))
            code, _, err = tether_check(cfg)
            return code, err

        self.assertEqual(check(self.path("a.ocsp"))[0], 0)
        code, err = check(self.path("b.ocsp"))  # the response of another certificate
        self.assertEqual(code, 1)
        self.assertRegex(err, r"OCSP response .*b\.ocsp: has no status for certificate .*a\.pem")
        garbage = self.path("garbage.ocsp")
        with open(garbage, "wb") as f:
            f.write(b"\x30\x03\x0a\x01")
        code, err = check(garbage)
        self.assertEqual(code, 1)
        self.assertRegex(err, r"OCSP response .*garbage\.ocsp: not a DER OCSP response")
        code, err = check(self.path("missing.ocsp"))
        self.assertEqual(code, 1)
        self.assertRegex(err, r"ocsp_response.*cannot read .*missing\.ocsp")


class TicketKeys(TlsTestCase):
    def session(self, port: int, sess_in: str | None, sess_out: str, *args: str) -> str:
        """One connection (optionally resuming `sess_in`), its session saved; s_client's output
        with the protocol messages (-msg)."""
        extra = ["-sess_in", sess_in] if sess_in else []
        out = s_client(port, "-CAfile", self.ca, "-msg", "-sess_out", sess_out, *extra, *args)
        self.assertIn("HTTP/1.1 200 OK", out)
        return out

    def reload(self, t: Tether, generation: int):
        t.signal(1)
        deadline = time.monotonic() + 10
        while f"(generation {generation})" not in t.logs():
            self.assertLess(time.monotonic(), deadline, t.logs())
            time.sleep(0.05)

    def check_rotation(self, version: str) -> tuple[Tether, str, str]:
        """A session s0, resumed on every worker; after one reload still resumed (s1 saved);
        after a second one a full handshake. Returns (tether, s0 path, s1 path)."""
        t, _ = self.start(self.one_cert(), workers=2)
        d = tempfile.mkdtemp(prefix="tether-sess-")
        self.addCleanup(shutil.rmtree, d, True)
        s0, s1, tmp = (os.path.join(d, n) for n in ("s0", "s1", "tmp"))
        args = ("-servername", "localhost", version)
        self.assertFalse(reused(self.session(t.port, None, s0, *args)))
        # Several connections, spread over both workers by the kernel: all resume, and under
        # the current key a TLS 1.2 ticket is not renewed (no NewSessionTicket message).
        for _ in range(6):
            out = self.session(t.port, s0, tmp, *args)
            self.assertTrue(reused(out))
            if version == "-tls1_2":
                self.assertNotIn("NewSessionTicket", out)
        self.reload(t, 2)
        # The key of s0 is now the previous one: still accepted, and the ticket renewed.
        out = self.session(t.port, s0, s1, *args)
        self.assertTrue(reused(out))
        self.assertIn("NewSessionTicket", out)
        self.reload(t, 3)
        # Two rotations later s0's key is gone: a full handshake.
        self.assertFalse(reused(self.session(t.port, s0, tmp, *args)))
        return t, s0, s1

    def test_ticket_resumes_across_one_reload_not_two_tls13(self):
        t, _, s1 = self.check_rotation("-tls1_3")
        # The ticket issued on the resumed connection after the first reload (under the key
        # that is now the previous one) still resumes.
        tmp = s1 + ".again"
        self.assertTrue(reused(self.session(t.port, s1, tmp, "-servername", "localhost", "-tls1_3")))

    def test_ticket_resumes_across_one_reload_not_two_tls12(self):
        # (s_client does not save the ticket renewed on a resumed TLS 1.2 connection: the
        # renewal is seen as the NewSessionTicket message instead.)
        self.check_rotation("-tls1_2")

    def test_resumption_per_sni_certificate_never_across_listeners(self):
        backend = Backend("s1")
        self.addCleanup(backend.__exit__, None, None, None)
        p1, p2 = free_ports(2)
        tls = "".join(
            f"      - certificate: {self.path(n + '.pem')}\n        private_key: {self.path(n + '.key')}\n"
            for n in ("a", "b"))
        cfg = (f"workers: 2\nadmin: off\naccess_log:\n  path: stdout\n"
               f"upstreams:\n  u:\n    balance: round_robin\n    servers:\n"
               f"      - name: s1\n        address: {HOST}:{backend.port}\n"
               f"listen:\n"
               f"  - address: {HOST}:{p1}\n    upstream: u\n    tls:\n      certificates:\n"
               + tls.replace("      ", "        ") +
               f"  - address: {HOST}:{p2}\n    upstream: u\n    tls:\n      certificates:\n"
               + tls.replace("      ", "        "))
        t = Tether(cfg, ports=[p1, p2])
        self.addCleanup(t.close)
        p1, p2 = t.ports  # moved if one was taken
        d = tempfile.mkdtemp(prefix="tether-sess-")
        self.addCleanup(shutil.rmtree, d, True)
        sb, tmp = os.path.join(d, "b"), os.path.join(d, "tmp")
        for version in ("-tls1_3", "-tls1_2"):
            self.assertFalse(reused(self.session(p1, None, sb, "-servername", "b.test", version)))
            out = s_client(p1, "-CAfile", self.ca, "-sess_in", sb, "-servername", "b.test", version)
            self.assertTrue(reused(out), version)  # the SNI certificate's context resumes it
            self.assertIn("HTTP/1.1 200 OK", out)
            # The same ticket keys, another listener: a full handshake, still served.
            self.assertFalse(reused(self.session(p2, sb, tmp, "-servername", "b.test", version)),
                             version)


if __name__ == "__main__":
    unittest.main()
