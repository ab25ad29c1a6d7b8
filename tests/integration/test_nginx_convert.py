"""tether-from-nginx end to end: the built converter on the sample nginx.confs of
tests/data/nginx, its output checked by the real `tether -t`, and converted configurations
run in front of real demo backends, next to real nginx on the very same nginx.conf, with the
same routing observed: the same client lands on the same server, and weights are respected
(where nginx's behaviour is defined: its hash placement differs from tether's Maglev, so the
two are compared on properties, not on which server a given client gets).

Clients with distinct addresses are made by binding the client socket to 127.0.K.N (the whole
127.0.0.0/8 is loopback), so ip_hash and hash $remote_addr see different clients.
"""

from __future__ import annotations

import os
import json
import sys
import re
import shutil
import socket
import subprocess
import tempfile
import time
import unittest
from collections import Counter
from pathlib import Path

import harness
from harness import HOST, Backend, Tether, free_port, wait_port

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools" / "bench"))
from compare_setup import nginx_user  # noqa: E402  (the benchmark's nginx runs the same way)

DATA = Path(__file__).resolve().parent.parent / "data" / "nginx"
CONVERTER = os.path.join(os.path.dirname(os.environ.get("DEMO_BACKEND_BIN", "")),
                         "tether-from-nginx")
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
TIMEOUT = 10.0

# Samples whose conversion loses something that matters (exit 1); the others exit 0.
EXPECTED_EXIT = {"multi.conf": 1, "untranslatable.conf": 1}


def run(args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL, **kw)


def get(port: int, source: str = HOST, cookie: str | None = None,
        path: str = "/") -> tuple[str, str | None]:
    """One GET from source address `source`; returns (backend name, Set-Cookie or None)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(TIMEOUT)
        s.bind((source, 0))
        s.connect((HOST, port))
        head = f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
        if cookie:
            head += f"Cookie: {cookie}\r\n"
        s.sendall((head + "\r\n").encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    text = data.decode(errors="replace")
    status = text.split("\r\n", 1)[0]
    if " 200 " not in status:
        raise AssertionError(f"{status!r} from port {port}: {text[:300]!r}")
    backend = re.search(r"(?im)^x-backend:\s*(\S+)", text).group(1)
    set_cookie = re.search(r"(?im)^set-cookie:\s*([^;\r\n]+)", text)
    return backend, set_cookie.group(1) if set_cookie else None


class Nginx:
    """Real nginx on an nginx.conf text, in the foreground, stopped by PID."""

    def __init__(self, conf: Path, port: int, workdir: Path):
        self.proc = subprocess.Popen(
            [NGINX, "-p", str(workdir), "-c", str(conf), "-e", str(workdir / "error.log"),
             "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL)
        harness._live.add(self.proc)
        try:
            wait_port(port, TIMEOUT, proc=self.proc, output=self.errors)
        except BaseException:
            self.close()
            raise

    def errors(self) -> str:
        """Its stderr, once it has exited (nginx writes its startup errors there)."""
        return self.proc.stderr.read().decode(errors="replace") if self.proc.poll() is not None \
            else ""

    def close(self) -> None:
        harness._stop_process(self.proc, 5.0)
        self.proc.stderr.close()


class ConverterOnSamples(unittest.TestCase):
    """Every sample converts; the output passes `tether -t`; findings carry file:line."""

    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="nginx-convert-"))

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_every_sample_converts_and_passes_tether_t(self):
        samples = sorted(DATA.glob("*.conf"))
        self.assertGreaterEqual(len(samples), 8)
        for conf in samples:
            with self.subTest(conf.name):
                out = self.tmp / f"{conf.stem}.yaml"
                done = run([CONVERTER, "-o", out, conf])
                self.assertEqual(done.returncode, EXPECTED_EXIT.get(conf.name, 0), done.stderr)
                own_errors = [l for l in done.stderr.splitlines()
                              if l.startswith("tether -t:") and ": warning: " not in l]
                self.assertEqual(own_errors, [], "the converter's own check found errors")
                check = run([harness._binary("TETHER_BIN"), "-t", "-c", out])
                self.assertEqual(check.returncode, 0, check.stdout + check.stderr)

    def test_untranslatable_directives_are_listed_with_file_and_line(self):
        done = run([CONVERTER, "-o", self.tmp / "u.yaml", DATA / "untranslatable.conf"])
        self.assertEqual(done.returncode, 1)
        lines = [l for l in done.stderr.splitlines() if ": not translated: " in l]
        where = [re.match(r"(.*untranslatable\.conf):(\d+): ", l).group(2) for l in lines]
        self.assertEqual(where, ["5", "7", "11", "15", "17", "21"], done.stderr)
        self.assertIn("untranslatable.conf:18: ignored: 'root'", done.stderr)

    def test_socket_io_location_gets_the_sid_suggestion(self):
        done = run([CONVERTER, DATA / "ip_hash_tutorial.conf"])
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertRegex(done.stderr, r"ip_hash_tutorial\.conf:32: suggestion: location "
                                      r"/socket\.io/ .*affinity: sid")
        self.assertIn("affinity: ip_hash", done.stdout)  # stdout carries the YAML

    def test_include_findings_name_the_included_file(self):
        done = run([CONVERTER, DATA / "multi.conf"])
        self.assertRegex(done.stderr, r"conf\.d/20-api\.conf:10: not translated: ")

    def test_unreadable_or_broken_input_exits_2_and_writes_nothing(self):
        bad = self.tmp / "bad.conf"
        bad.write_text("http {\n  upstream u { server a:1; }\n")
        out = self.tmp / "out.yaml"
        done = run([CONVERTER, "-o", out, bad])
        self.assertEqual(done.returncode, 2)
        self.assertIn("bad.conf:2: unexpected end of file", done.stderr)
        self.assertFalse(out.exists())
        self.assertEqual(run([CONVERTER, self.tmp / "none.conf"]).returncode, 2)


class ConvertedRouting(unittest.TestCase):
    """Converted configurations proxy real traffic with nginx's stickiness and weights."""

    @classmethod
    def setUpClass(cls):
        cls.backends = [Backend(f"s{i}") for i in (1, 2, 3)]
        cls.port = {b.name: b.port for b in cls.backends}

    @classmethod
    def tearDownClass(cls):
        for b in cls.backends:
            b.stop()

    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="nginx-routing-"))
        self.tmp.chmod(0o755)  # nginx's workers run unprivileged when we are root

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def nginx_conf(self, listen_port: int, upstream: str, location: str = "") -> Path:
        """A full nginx.conf: one upstream block `app`, one server proxying / to it."""
        d = self.tmp
        text = f"""# written by test_nginx_convert.py
{nginx_user()}worker_processes 1;
pid {d}/nginx.pid;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    upstream app {{
{upstream}
    }}
    server {{
        listen 127.0.0.1:{listen_port};
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Host $host;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
{location}
        }}
    }}
}}
"""
        conf = d / "nginx.conf"
        conf.write_text(text)
        return conf

    def both(self, upstream: str):
        """Starts nginx and tether (converted) on the same nginx.conf; returns their ports."""
        nginx, nginx_port = harness.on_free_ports(  # again on another port if it was taken
            lambda ports: (Nginx(self.nginx_conf(ports[0], upstream), ports[0], self.tmp),
                           ports[0]), 1)
        self.addCleanup(nginx.close)
        tether_port = free_port()
        tether_conf = self.nginx_conf(tether_port, upstream)  # same text, tether's port
        done = run([CONVERTER, tether_conf])
        self.assertEqual(done.returncode, 0, done.stderr)
        tether = Tether(done.stdout + "\nadmin: off\n")
        self.addCleanup(tether.close)
        return {"nginx": nginx_port, "tether": tether.port}

    def tether_only(self, upstream: str) -> int:
        """tether (converted) alone on the nginx.conf; returns its port."""
        port = free_port()
        done = run([CONVERTER, self.nginx_conf(port, upstream)])
        self.assertEqual(done.returncode, 0, done.stderr)
        tether = Tether(done.stdout + "\nadmin: off\n")
        self.addCleanup(tether.close)
        return tether.port

    def servers(self, **weights) -> str:
        return "\n".join(f"        server {HOST}:{self.port[name]}"
                         f"{'' if w == 1 else f' weight={w}'};" for name, w in weights.items())

    def test_ip_hash_pins_each_slash_24_to_one_server(self):
        ports = self.both("        ip_hash;\n" + self.servers(s1=1, s2=1, s3=1))
        for proxy, port in ports.items():
            with self.subTest(proxy):
                seen = set()
                for k in range(1, 13):
                    hits = {get(port, f"127.0.{k}.{n}")[0] for n in (1, 2, 3) for _ in range(2)}
                    self.assertEqual(len(hits), 1, f"127.0.{k}.0/24 spread over {hits}")
                    seen |= hits
                self.assertGreater(len(seen), 1, "every /24 on one server")

    def test_hash_remote_addr_consistent_pins_each_address(self):
        ports = self.both("        hash $remote_addr consistent;\n"
                          + self.servers(s1=1, s2=1, s3=1))
        for proxy, port in ports.items():
            with self.subTest(proxy):
                seen = Counter()
                for n in range(2, 32):
                    hits = {get(port, f"127.0.0.{n}")[0] for _ in range(3)}
                    self.assertEqual(len(hits), 1, f"127.0.0.{n} spread over {hits}")
                    seen[hits.pop()] += 1
                self.assertGreater(len(seen), 1, "every address on one server")
                # A client's WebSocket reaches the server its HTTP requests reach.
                backend, _ = get(port, HOST)
                ws = harness.WebSocket.connect(HOST, port, "/socket.io/?EIO=4&transport=websocket",
                                               timeout=TIMEOUT)
                ws.send_text("whoami")
                self.assertEqual(ws.recv_text(), backend)
                ws.close()

    def test_round_robin_weights_are_respected(self):
        ports = self.both(self.servers(s1=2, s2=1, s3=1))
        for proxy, port in ports.items():
            with self.subTest(proxy):
                counts = Counter(get(port)[0] for _ in range(40))
                self.assertEqual(counts, Counter(s1=20, s2=10, s3=10))

    def test_least_conn_leaves_the_backup_idle_while_primaries_are_up(self):
        ports = self.both("        least_conn;\n        server %s:%d;\n        server %s:%d;\n"
                          "        server %s:%d backup;" % (HOST, self.port["s1"], HOST,
                                                            self.port["s2"], HOST,
                                                            self.port["s3"]))
        for proxy, port in ports.items():
            with self.subTest(proxy):
                counts = Counter(get(port)[0] for _ in range(20))
                self.assertEqual(set(counts), {"s1", "s2"})

    def test_arg_sid_hash_pins_each_engine_io_session(self):
        # `hash $arg_sid consistent` becomes affinity: sid. (nginx itself is not compared here:
        # it hashes the handshake, which has no sid yet, and the session's later requests
        # separately, so they may reach another server than the one that made the session.)
        port = self.tether_only("        hash $arg_sid consistent;\n"
                                + self.servers(s1=1, s2=1, s3=1))
        made = Counter()
        for _ in range(9):
            body = harness.http_request(HOST, port, "GET",
                                        "/socket.io/?EIO=4&transport=polling").body.decode()
            sid = json.loads(body[1:])["sid"]  # the demo backend's "NAME-N"
            owner = sid.split("-")[0]
            made[owner] += 1
            for _ in range(3):
                again = harness.http_request(
                    HOST, port, "GET", f"/socket.io/?EIO=4&transport=polling&sid={sid}")
                self.assertEqual(again.body.decode(), "6" + owner)
        self.assertEqual(made, Counter(s1=3, s2=3, s3=3))  # handshakes by round robin

    def test_cookie_hash_is_sticky_and_weighted(self):
        ports = self.both("        hash $cookie_session_id consistent;\n"
                          + self.servers(s1=3, s2=1))
        # nginx: clients are told apart by the application's cookie; each stays put and the
        # weights show in the share of 200 distinct cookies (its hash is deterministic).
        placed = Counter()
        for n in range(200):
            hits = {get(ports["nginx"], cookie=f"session_id=user{n}")[0] for _ in range(2)}
            self.assertEqual(len(hits), 1)
            placed[hits.pop()] += 1
        self.assertTrue(0.6 <= placed["s1"] / 200 <= 0.9, placed)
        # tether: new clients are placed by weight (round robin 3:1) and get tether's signed
        # cookie, with which each one stays on its server.
        placed = Counter()
        for n in range(40):
            first, cookie = get(ports["tether"])
            self.assertIsNotNone(cookie, "no Set-Cookie from tether")
            self.assertTrue(cookie.startswith("tether="), cookie)
            again = {get(ports["tether"], cookie=cookie)[0] for _ in range(3)}
            self.assertEqual(again, {first})
            placed[first] += 1
        self.assertEqual(placed, Counter(s1=30, s2=10))


if __name__ == "__main__":
    unittest.main()
