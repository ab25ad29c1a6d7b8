"""The Docker Compose example run without Docker: its Socket.IO app
(conf/examples/compose/app/server.js, its npm dependencies installed from the committed lock
file), a real redis-server, and two tether replicas started from the example's tether.yaml
with only the addresses changed to 127.0.0.1 ports. Engine.IO clients (long-polling, by
hand) whose requests alternate between the two replicas keep their session on one server
(any 400 "Session ID unknown" would fail), and a chat message sent by a client on one
Socket.IO server reaches a client on another through the Redis adapter.

Skipped when node/npm or redis-server are missing, or `npm ci` cannot reach the registry.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest
from pathlib import Path

import harness
from harness import HOST, Tether, free_port

try:
    import yaml
except ImportError:
    yaml = None

APP = Path(__file__).resolve().parents[2] / "conf" / "examples" / "compose" / "app"
COMPOSE_TETHER = APP.parent / "tether.yaml"
TIMEOUT = 10.0
# A process's first accept: node's server.js takes ~0.5 s (load 5 on 2 cores); a slow start
# under a heavier load is waited for, not failed (a process that exits fails at once).
START_TIMEOUT = 30.0


def npm_ci() -> str | None:
    """Installs the app's locked dependencies once; returns why not, or None."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        return "node/npm not installed"
    if (APP / "node_modules" / "socket.io" / "package.json").exists():
        return None
    try:
        done = subprocess.run([npm, "ci", "--omit=dev", "--no-audit", "--no-fund"], cwd=APP,
                              capture_output=True, text=True, timeout=300,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return "npm ci took more than 300 s (registry unreachable?)"
    return None if done.returncode == 0 else "npm ci failed: " + done.stderr[-500:]


class Proc:
    """A process started here, stopped by PID. With `port`: waits (at most START_TIMEOUT) until
    it accepts there; RuntimeError (with its output) if it exits first,
    harness.PortTaken when that output says its port was taken."""

    def __init__(self, args, env=None, port=None):
        self.args = args
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(args, env={**os.environ, **(env or {})},
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        harness._live.add(self.proc)
        if port:
            try:
                harness.wait_port(port, START_TIMEOUT, proc=self.proc, output=self.output)
            except BaseException:
                self.close()
                raise

    @classmethod
    def on_free_port(cls, make) -> tuple[Proc, int]:
        """Proc(*make(port), port=port) on a free port, again on another one while the port
        was taken before it bound it (harness.on_free_ports)."""
        def start(ports):
            args, env = make(ports[0])
            return cls(args, env=env, port=ports[0]), ports[0]
        return harness.on_free_ports(start, 1)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def close(self):
        harness._stop_process(self.proc, 5.0)
        self.log.close()


class EngineIoClient:
    """Engine.IO v4 long-polling, each request on a new connection, to a list of replicas in
    turn (as an L4 balancer may spread them); keeps tether's cookie like a browser."""

    def __init__(self, ports: list[int]):
        self.ports, self.turn, self.cookies, self.sid = ports, 0, {}, None
        self.server = None  # the name the app's "hello" event gave
        self.events: list = []
        packets = self.request("GET")
        assert packets[0].startswith("0"), packets
        self.sid = json.loads(packets[0][1:])["sid"]
        assert self.request("POST", "40") == ["ok"]
        deadline = time.monotonic() + TIMEOUT
        while self.server is None and time.monotonic() < deadline:
            self.poll()
        assert self.server, f"no hello event: {self.events}"

    def request(self, method: str, body: str | None = None) -> list[str]:
        port = self.ports[self.turn % len(self.ports)]
        self.turn += 1
        path = "/socket.io/?EIO=4&transport=polling" + (f"&sid={self.sid}" if self.sid else "")
        conn = http.client.HTTPConnection(HOST, port, timeout=TIMEOUT + 30)
        headers = {"Content-Type": "text/plain;charset=UTF-8"}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            text = resp.read().decode()
            for value in resp.headers.get_all("Set-Cookie") or []:
                name, _, rest = value.partition("=")
                self.cookies[name.strip()] = rest.split(";", 1)[0]
        finally:
            conn.close()
        if resp.status != 200:
            raise AssertionError(f"{method} via :{port}: {resp.status} {text}")
        return text.split("\x1e")

    def poll(self) -> None:
        for packet in self.request("GET"):
            if packet == "2":  # ping
                self.request("POST", "3")
            elif packet.startswith("42"):
                name, *args = json.loads(packet[2:])
                if name == "hello":
                    self.server = args[0]
                self.events.append((name, *args))

    def emit(self, name: str, *args) -> None:
        assert self.request("POST", "42" + json.dumps([name, *args])) == ["ok"]


@unittest.skipIf(yaml is None, "python3-yaml not installed")
class ComposeExampleWithoutDocker(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        why = npm_ci() or (None if shutil.which("redis-server") else "no redis-server")
        if why:
            raise unittest.SkipTest(why)
        cls.procs = []
        try:
            cls.start()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def start(cls):
        redis, redis_port = Proc.on_free_port(lambda port: (
            ["redis-server", "--bind", HOST, "--port", str(port), "--save", "", "--appendonly",
             "no"], None))
        cls.procs.append(redis)
        config = yaml.safe_load(COMPOSE_TETHER.read_text())
        servers = config["upstreams"]["io"]["servers"]
        for server in servers:  # the example's io1..io3, each on a port of its own
            node, port = Proc.on_free_port(lambda port: (
                ["node", str(APP / "server.js")],
                {"NAME": server["name"], "PORT": str(port),
                 "REDIS_URL": f"redis://{HOST}:{redis_port}"}))
            cls.procs.append(node)
            server["address"] = f"{HOST}:{port}"
        config["redis"]["address"] = f"{HOST}:{redis_port}"
        config["admin"] = False
        config["access_log"] = {"path": "off"}
        config["timeouts"]["shutdown"] = "2s"
        cls.ports, cls.tethers = [], []
        for _ in range(2):  # two replicas of one config, as the Compose file runs them
            port = free_port()
            config["listen"][0]["address"] = f"{HOST}:{port}"
            cls.tethers.append(Tether(yaml.safe_dump(config), ports=[port],
                                      env={"TETHER_COOKIE_SECRET": "compose-example-test"}))
            cls.ports.append(cls.tethers[-1].port)

    @classmethod
    def tearDownClass(cls):
        for t in getattr(cls, "tethers", []):
            t.close()
        for p in reversed(cls.procs):
            p.close()

    def test_sessions_stay_on_their_server_across_replicas_and_broadcast_crosses_servers(self):
        clients = []
        while len({c.server for c in clients}) < 2 and len(clients) < 8:
            clients.append(EngineIoClient(self.ports))
        names = {c.server for c in clients}
        self.assertGreater(len(names), 1, "every session placed on one server")
        a = clients[0]
        b = next(c for c in clients if c.server != a.server)
        a.emit("chat", "hello across servers")  # via the next replica in turn
        deadline = time.monotonic() + TIMEOUT
        got = []
        while time.monotonic() < deadline and not got:
            b.poll()
            got = [e for e in b.events if e[0] == "chat"]
        self.assertEqual(got, [("chat", {"from": a.server, "text": "hello across servers"})])
        for c in clients:
            self.assertGreaterEqual(c.turn, 2)  # each used both replicas


if __name__ == "__main__":
    unittest.main()
