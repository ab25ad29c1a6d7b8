"""Test certificates made with the `openssl` command line (no fixed keys in the repo).

make_ca(dir) writes a test CA (ca.pem/ca.key), make_leaf(dir, N, names) a leaf signed by it
(N.pem: leaf + CA chain, N.key). PkiTestCase gives a test class a temporary directory of
them, made once for the class.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import unittest


def _openssl(*args: str, cwd: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60,
                   stdin=subprocess.DEVNULL)


def make_ca(d: str, name: str = "ca", cn: str = "tether test CA") -> None:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
             "-subj", f"/CN={cn}", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)


def make_leaf(d: str, name: str, dns: list[str], ca: str = "ca", serial: int = 1,
              ips: list[str] = (), usage: str = "serverAuth") -> str:
    """Signs a leaf for `dns` names (and `ips` addresses); writes NAME.key and NAME.pem (leaf
    then CA). usage: the extendedKeyUsage (clientAuth for a client certificate)."""
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={dns[0]}", cwd=d)
    ext = os.path.join(d, f"{name}.ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=" + ",".join([f"DNS:{n}" for n in dns] +
                                             [f"IP:{a}" for a in ips]) + "\n")
        f.write(f"extendedKeyUsage={usage}\n")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
             "-set_serial", str(serial), "-days", "1", "-extfile", ext, "-out", f"{name}.crt",
             cwd=d)
    with open(os.path.join(d, f"{name}.pem"), "w") as out:
        for part in (f"{name}.crt", f"{ca}.pem"):
            with open(os.path.join(d, part)) as f:
                out.write(f.read())
    return os.path.join(d, f"{name}.pem")


def serial_of(pem_der_or_dict) -> int:
    """The serial number of a certificate as Python's ssl getpeercert() returns it."""
    return int(pem_der_or_dict["serialNumber"], 16)


class PkiTestCase(unittest.TestCase):
    """A TestCase whose class shares a temporary directory of certificates, `cls.pki`, made
    by the subclass's make_certificates() before its first test and removed after its last;
    path(name) is a file in it."""

    pki_prefix = "tether-pki-"

    @classmethod
    def make_certificates(cls) -> None:
        """Writes the class's certificates into cls.pki (make_ca, make_leaf)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.pki = tempfile.mkdtemp(prefix=cls.pki_prefix)
        try:
            cls.make_certificates()
        except BaseException:
            shutil.rmtree(cls.pki, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.pki, ignore_errors=True)
        super().tearDownClass()

    def path(self, name: str) -> str:
        return os.path.join(self.pki, name)
