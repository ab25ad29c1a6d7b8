"""Interop tests: tether's affinity modes with the real Socket.IO servers and clients.

Each test starts, on 127.0.0.1 free ports: a redis-server (for the Socket.IO Redis adapters),
three `node server.js` (socket.io 4.8.1 or 2.5.0 with the Redis adapter of that generation),
tether (TETHER_BIN) in front of them with the affinity mode under test, then `node client.js`
(socket.io-client 4.8.1 or 2.5.0) which reports one JSON line that the test checks.

Needs: TETHER_BIN, node + npm (node_modules is installed once with `npm ci` from
package-lock.json when missing), redis-server. Python stdlib only.

    cd tests/interop && TETHER_BIN=../../build-interop/tether python3 -m unittest -v test_interop

Every process is started here and stopped by its PID in tearDown; everything is time-bounded.
"""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

import rig  # puts tests/integration on sys.path
from rig import HERE, read_listening, tail
from harness import on_free_ports  # (on the path rig set)


class InteropTest(unittest.TestCase):
    """One fresh redis + 3 Socket.IO servers + tether per test."""

    @classmethod
    def setUpClass(cls):
        rig.require_tools(cls)

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="tether-interop-")
        self.procs = []  # (name, Popen), stopped in reverse order
        self.servers = {}  # name -> (port, Popen)
        self.redis_port = None
        self.tether_port = None
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def tearDown(self):
        rig.stop_all(self.procs, self.tmp)

    # ---- processes -----------------------------------------------------------------------

    def _spawn(self, name, argv, stdout=None, cwd=None):
        return rig.spawn(self.tmp, self.procs, name, argv, stdout, cwd)

    def _logs(self):
        return rig.stderr_tails([(self.tmp, self.procs)])

    def start_redis(self):
        def start(ports):
            rig.start_redis(self.redis_bin, self.tmp, self.procs, "redis", ports[0])
            return ports[0]
        try:  # on another port when the one chosen was taken before redis-server bound it
            self.redis_port = on_free_ports(start, 1)
        except RuntimeError as e:
            self.fail(str(e))

    def start_servers(self, version, count=3):
        starting = []
        for i in range(1, count + 1):
            name = f"s{i}"
            p = self._spawn(name, [self.node, os.path.join(HERE, "server.js"), "--version", str(version),
                                   "--name", name, "--port", "0", "--redis-port", str(self.redis_port)],
                            stdout=subprocess.PIPE, cwd=HERE)
            starting.append((name, p))
        for name, p in starting:
            port = self._read_listening(name, p, timeout=30)
            self.servers[name] = (port, p)

    def _read_listening(self, name, p, timeout):
        try:
            return read_listening(name, p, timeout)
        except RuntimeError as e:
            self.fail(f"{e}:\n{self._logs()}")

    def start_tether(self, affinity, health_check=False, extra_upstream=""):
        try:  # on another port when the one chosen was taken before tether bound it
            self.tether_port = on_free_ports(
                lambda ports: self._start_tether(ports[0], affinity, health_check,
                                                 extra_upstream), 1)
        except (RuntimeError, TimeoutError) as e:
            self.fail(f"{e}\n{self._logs()}")

    def _start_tether(self, listen_port, affinity, health_check, extra_upstream):
        lines = [
            "workers: 2",
            "admin: off",
            "access_log: {path: off}",
            "listen:",
            f"  - {{address: 127.0.0.1:{listen_port}, upstream: io}}",
            "upstreams:",
            "  io:",
            f"    affinity: {affinity}",
            "    balance: least_conn",
            '    cookie: {secret: "test-secret"}',
        ]
        if health_check:
            lines += ["    health_check: {path: /healthz, interval: 500ms, timeout: 500ms, rise: 1, fall: 1}"]
        if extra_upstream:
            lines += [extra_upstream]
        lines.append("    servers:")
        for name, (port, _) in sorted(self.servers.items()):
            lines.append(f"      - {{name: {name}, address: 127.0.0.1:{port}}}")
        cfg = os.path.join(self.tmp, "tether.yaml")
        with open(cfg, "w") as f:
            f.write("\n".join(lines) + "\n")
        rig.spawn_listening(self.tmp, self.procs, "tether", [self.tether_bin, "-c", cfg],
                            [listen_port])
        return listen_port

    def client_argv(self, version, clients, transports, duration_ms, broadcasts=0, extra=()):
        return [self.node, os.path.join(HERE, "client.js"), "--version", str(version),
                "--url", f"http://127.0.0.1:{self.tether_port}", "--clients", str(clients),
                "--transports", transports, "--duration-ms", str(duration_ms),
                "--broadcasts", str(broadcasts), *extra]

    def run_client(self, version, clients, transports, duration_ms=4000, broadcasts=10, extra=()):
        argv = self.client_argv(version, clients, transports, duration_ms, broadcasts, extra)
        try:
            p = subprocess.run(argv, cwd=HERE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, timeout=duration_ms / 1000 + 120)
        except subprocess.TimeoutExpired:
            self.fail(f"client.js did not finish in time\n{self._logs()}")
        return self._parse(p.stdout, p.stderr)

    def _parse(self, stdout, stderr):
        lines = [l for l in stdout.splitlines() if l.strip().startswith("{")]
        if not lines:
            self.fail(f"client.js printed no result\nstdout: {stdout[-2000:]}\nstderr: {stderr[-2000:]}"
                      f"\n{self._logs()}")
        result = json.loads(lines[-1])
        print("\n  client.js:", json.dumps(result, sort_keys=True))
        return result

    # ---- checks --------------------------------------------------------------------------

    def assert_clean(self, r, clients, broadcasts, spread=True, upgraded=None):
        msg = f"\nresult: {json.dumps(r, sort_keys=True)}\n{self._logs()}"
        rig.assert_client_clean(self, r, clients, msg)
        self.assertEqual(r["clients"], clients, msg)
        self.assertEqual(sum(r["per_server"].values()), clients, msg)
        if spread:
            self.assertGreater(len(r["per_server"]), 1, "all clients on one server" + msg)
        self.assertEqual(r["broadcasts_expected"], broadcasts, msg)
        self.assertEqual(r["broadcasts_received_min"], broadcasts, msg)
        self.assertEqual(r["broadcasts_received_max"], broadcasts, msg)
        self.assertEqual(r["duplicates"], 0, msg)
        if upgraded is not None:
            self.assertEqual(r["upgrade_errors"], 0, msg)
            self.assertEqual(r["upgraded"], upgraded, msg)

    def setup_rig(self, version, affinity, **kw):
        self.start_redis()
        self.start_servers(version)
        self.start_tether(affinity, **kw)

    # ---- cases ---------------------------------------------------------------------------

    def test_v4_sid_default_transports(self):
        self.setup_rig(4, "sid")
        r = self.run_client(4, 100, "default")
        self.assert_clean(r, 100, 10, upgraded=100)
        self.assertEqual(r["final_transport"], {"websocket": 100})

    def test_v4_sid_polling_only(self):
        self.setup_rig(4, "sid")
        r = self.run_client(4, 100, "polling")
        self.assert_clean(r, 100, 10)
        self.assertEqual(r["final_transport"], {"polling": 100})

    def test_v4_sid_websocket_only(self):
        self.setup_rig(4, "sid")
        r = self.run_client(4, 100, "websocket")
        self.assert_clean(r, 100, 10)
        self.assertEqual(r["final_transport"], {"websocket": 100})

    def test_v2_eio3_sid_default_transports(self):
        self.setup_rig(2, "sid")
        r = self.run_client(2, 100, "default")
        self.assert_clean(r, 100, 10, upgraded=100)
        self.assertEqual(r["final_transport"], {"websocket": 100})

    def test_v2_eio3_sid_polling_only(self):
        self.setup_rig(2, "sid")
        r = self.run_client(2, 100, "polling")
        self.assert_clean(r, 100, 10)
        self.assertEqual(r["final_transport"], {"polling": 100})

    def test_v4_ip_hash_default_transports(self):
        # All clients from 127.0.0.1 would share one key (one server); connect from 8 loopback
        # source addresses so that the hash has something to spread.
        self.setup_rig(4, "ip_hash")
        r = self.run_client(4, 50, "default", extra=("--source-ips", "8"))
        self.assert_clean(r, 50, 10, upgraded=50)
        self.assertEqual(r["source_ips_on_several_servers"], 0,
                         f"one source IP on several servers: {r['per_source_ip']}")

    def test_v4_cookie_websocket_only(self):
        # Node clients keep no cookies: cookie affinity holds for them only websocket-only
        # (one connection per session). See client.js.
        self.setup_rig(4, "cookie")
        r = self.run_client(4, 50, "websocket")
        self.assert_clean(r, 50, 10)

    def test_v4_cookie_default_transports_with_cookie_jar(self):
        # socket.io-client 4 keeps cookies in Node when withCredentials is set (--cookie-jar):
        # then cookie affinity must hold for polling + upgrade as in a browser.
        self.setup_rig(4, "cookie")
        r = self.run_client(4, 50, "default", extra=("--cookie-jar",))
        self.assert_clean(r, 50, 10, upgraded=50)

    def _kill_one_server(self, health_check, transports="default"):
        self.setup_rig(4, "sid", health_check=health_check)
        ready = os.path.join(self.tmp, "ready.json")
        signal_file = os.path.join(self.tmp, "killed.json")
        argv = self.client_argv(4, 60, transports, 4000, 0,
                                ("--reconnect", "--ready-file", ready, "--kill-signal-file", signal_file))
        out_path = os.path.join(self.tmp, "client.stdout")
        with open(out_path, "wb") as out:
            client = self._spawn("client", argv, stdout=out, cwd=HERE)
        deadline = time.monotonic() + 40
        while not os.path.exists(ready):
            if client.poll() is not None or time.monotonic() > deadline:
                self.fail(f"client.js never became ready\n{tail(out_path)}\n{self._logs()}")
            time.sleep(0.05)
        with open(ready) as f:
            placement = json.load(f)
        self.assertEqual(placement["connected"], 60, f"{placement}\n{self._logs()}")
        time.sleep(1.0)  # let the whoami traffic and the upgrades settle
        victim = max(sorted(placement["per_server"]), key=lambda n: placement["per_server"][n])
        self.assertGreater(placement["per_server"][victim], 0)
        _, vproc = self.servers[victim]
        t_ms = int(time.time() * 1000)
        os.kill(vproc.pid, signal.SIGKILL)
        vproc.wait(timeout=5)
        tmp_signal = signal_file + ".tmp"
        with open(tmp_signal, "w") as f:
            json.dump({"killed": victim, "t_ms": t_ms}, f)
        os.rename(tmp_signal, signal_file)
        try:
            client.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.fail(f"client.js did not finish after the kill\n{self._logs()}")
        with open(out_path) as f:
            r = self._parse(f.read(), tail(os.path.join(self.tmp, "client.stderr")))
        k = r.get("kill")
        msg = f"\nresult: {json.dumps(r, sort_keys=True)}\n{self._logs()}"
        self.assertIsNotNone(k, msg)
        self.assertEqual(k["killed"], victim, msg)
        self.assertEqual(r["connected"], 60, msg)
        self.assertGreater(k["affected"], 0, msg)
        self.assertEqual(k["reconnected_within_10s"], k["affected"], "not all reconnected within 10 s" + msg)
        self.assertLessEqual(k["errors_after_kill_max_per_client"], 1, "error loop" + msg)
        self.assertEqual(k["unaffected_errors"], 0, msg)
        self.assertEqual(k["unaffected_disconnects"], 0, msg)
        self.assertEqual(r["sticky_violations"], 0, msg)
        self.assertNotIn(victim, k["per_server_after"], msg)
        self.assertEqual(sum(k["per_server_after"].values()), 60, "not all connected at the end" + msg)

    def test_v4_sid_kill_server_with_health_checks(self):
        self._kill_one_server(health_check=True)

    def test_v4_sid_kill_server_passive_only(self):
        # No active checks: tether learns of the dead server from refused connections only.
        self._kill_one_server(health_check=False)

    def test_v4_sid_kill_server_polling_only(self):
        # Polling clients of the dead server have a long-poll in flight and keep their sid:
        # the in-flight poll fails, and no request with the old sid may loop on errors.
        self._kill_one_server(health_check=False, transports="polling")


if __name__ == "__main__":
    unittest.main()
