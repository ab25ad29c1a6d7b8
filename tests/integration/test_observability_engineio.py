"""tether_engineio_sessions and /status "sessions" with real Socket.IO: two socket.io 4.8.1
servers behind tether (`affinity: sid`) and real socket.io-client 4.8.1 clients, some
polling-only, some websocket-only, some with the default transports (a polling handshake, then
the upgrade to websocket). While they are connected, the polling gauge counts the polling-only
clients and the websocket gauge the others (upgraded sessions move from polling to websocket);
once they leave both fall to zero.

Uses the interop rig (tests/interop: server.js, client.js, the committed package-lock.json;
`npm ci` there when node_modules is missing) and a real redis-server (the servers' adapter).
Skipped without node/npm or redis-server, except under CI=true.
"""

import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest

from harness import HOST, LoggedProcess, Tether, free_ports, http_request
from redis_fixture import RedisServer
from obs_common import REPO, parse_metrics, require_tool, wait_for

INTEROP = os.path.join(REPO, "tests", "interop")
NPM_CI_TIMEOUT = 300


def ensure_node_modules() -> None:
    if os.path.exists(os.path.join(INTEROP, "node_modules", "socket.io", "package.json")):
        return
    p = subprocess.run([require_tool("npm"), "ci", "--no-audit", "--no-fund"], cwd=INTEROP,
                       capture_output=True, timeout=NPM_CI_TIMEOUT, stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        raise AssertionError("npm ci failed: " + (p.stdout + p.stderr).decode()[-3000:])


def node_process(args: list[str], name: str) -> LoggedProcess:
    """node running `args` (a script of tests/interop and its options), stdout piped."""
    return LoggedProcess([require_tool("node"), *args], name, cwd=INTEROP, pipe_stdout=True)


class EngineIoSessionsTest(unittest.TestCase):
    def setUp(self):
        require_tool("node")
        require_tool("redis-server")
        ensure_node_modules()
        self.redis = RedisServer()
        self.addCleanup(self.redis.close)
        self.dir = tempfile.mkdtemp(prefix="tether-eio-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        servers = []
        for name in ("s1", "s2"):
            srv = node_process(["server.js", "--version", "4", "--name", name, "--port", "0",
                                "--redis-port", str(self.redis.port)], name)
            self.addCleanup(srv.close)
            port = int(re.fullmatch(r"listening (\d+)", srv.read_line(30)).group(1))
            servers.append(f"      - {{name: {name}, address: \"{HOST}:{port}\"}}")
        self.port, self.admin = free_ports(2)
        servers_yaml = "\n".join(servers)
        self.tether = Tether(f"""workers: 2
listen:
  - {{address: "{HOST}:{self.port}", upstream: io}}
admin: {{address: "{HOST}:{self.admin}"}}
access_log: {{path: "off"}}
upstreams:
  io:
    affinity: sid
    balance: round_robin
    servers:
{servers_yaml}
""", ports=[self.port, self.admin])
        self.addCleanup(self.tether.close)
        self.port, self.admin = self.tether.ports  # moved if one was taken

    def clients(self, transports: str, n: int, duration_ms: int) -> tuple[LoggedProcess, str]:
        ready = os.path.join(self.dir, f"ready-{transports}")
        c = node_process(["client.js", "--version", "4", "--url", f"http://{HOST}:{self.port}",
                          "--clients", str(n), "--transports", transports,
                          "--duration-ms", str(duration_ms), "--whoami-interval-ms", "600000",
                          "--ready-file", ready], f"client-{transports}")
        self.addCleanup(c.close)
        return c, ready

    def sessions(self) -> dict:
        fam = parse_metrics(http_request(HOST, self.admin, "GET", "/metrics").text)[
            "tether_engineio_sessions"]
        return {t: fam.total(upstream="io", transport=t) for t in ("polling", "websocket")}

    def test_sessions_by_transport_follow_real_socketio_clients(self):
        runs = [self.clients("polling", 4, 12000), self.clients("websocket", 3, 12000),
                self.clients("default", 2, 12000)]
        for _, ready in runs:
            wait_for(lambda: os.path.exists(ready), 30, 0.1, f"{ready} written")
            with open(ready) as f:
                self.assertEqual(json.load(f)["connected"], {
                    "ready-polling": 4, "ready-websocket": 3, "ready-default": 2}[
                        os.path.basename(ready)])
        # The default clients upgrade to websocket shortly after their polling handshake.
        last = []

        def expected():
            last[:] = [self.sessions()]
            return last[0] == {"polling": 4, "websocket": 5}
        try:
            wait_for(expected, 10, 0.2, "4 polling and 5 websocket sessions")
        except TimeoutError:
            self.fail(f"sessions {last[0]}, expected 4 polling and 5 websocket")
        status = json.loads(http_request(HOST, self.admin, "GET", "/status").body)
        servers = status["upstreams"]["io"]["servers"]
        self.assertEqual(sum(s["sessions"]["polling"] for s in servers), 4)
        self.assertEqual(sum(s["sessions"]["websocket"] for s in servers), 5)
        self.assertEqual(sum(s["tunnels"] for s in servers), 5)
        # One handshake per client, each sid learnt once.
        m = parse_metrics(http_request(HOST, self.admin, "GET", "/metrics").text)
        self.assertEqual(m["tether_affinity_sids_learnt_total"].total(upstream="io"), 9)
        for c, _ in runs:
            report = json.loads(c.read_line(60))
            self.assertEqual(report.get("sticky_violations"), 0, report)
        wait_for(lambda: self.sessions() == {"polling": 0, "websocket": 0}, 15, 0.2,
                 "sessions closed")


if __name__ == "__main__":
    unittest.main()
