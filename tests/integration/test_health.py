"""Health, failover and lifecycle end to end: the real tether binary, real demo backends.

Active checks (a killed backend taken out, back after `rise`; a failing /healthz; `initial:
down`), passive checks (max_fails within fail_timeout; 5xx answers only with fail_on_status),
retries on another server when a connect is refused (never twice the same server), backups
only when no primary can take a client (down, draining or full), max_conns, drain (bound clients stay, new ones avoid it, survives SIGHUP), reloads that add,
remove and re-weight servers under an open WebSocket tunnel, and a bad reload refused with the
messages of `tether -t`.

Every test starts its own backends and tether on free ports and stops them by PID. State is
read from the admin endpoints (/status, /metrics, /readyz) on a free port. Waits poll with a
bound; check intervals are short (100-200 ms) so each test takes a few seconds.
"""

import json
import re
import signal
import socket
import time
import unittest

from harness import (HOST, Backend, HttpConnection, Tether, WebSocket, free_port, free_ports,
                     http_request, tether_check, tether_config, wait_port)


def wait_until(predicate, timeout=10.0, interval=0.05, what="condition"):
    """Polls predicate() until it is truthy; returns its value or raises TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not met within {timeout}s")
        time.sleep(interval)


def dead_address() -> str:
    """host:port where nothing listens (connects are refused)."""
    return f"{HOST}:{free_port()}"


class HealthTestCase(unittest.TestCase):
    def backends(self, *names: str) -> list[Backend]:
        return [self.backend(n) for n in names]

    def backend(self, name: str, port: int = 0) -> Backend:
        b = Backend(name, port=port)
        self.addCleanup(b.__exit__, None, None, None)
        return b

    def tether(self, servers, workers=1, **overrides) -> Tether:
        self.port, self.admin_port = free_ports(2)
        self.servers = [(s.name, s.port) if isinstance(s, Backend) else s for s in servers]
        self.overrides = {"workers": workers, "admin": {"address": f"{HOST}:{self.admin_port}"},
                          **overrides}
        t = Tether(self.config(), ports=[self.port, self.admin_port])
        self.addCleanup(t.close)
        self.port, self.admin_port = t.ports  # moved if one was taken (config() follows)
        self.t = t
        return t

    def config(self, servers=None, **changes) -> str:
        """The running test's config text, with other servers or overrides."""
        return tether_config(servers if servers is not None else self.servers, self.port,
                             **{**self.overrides, **changes})

    # -- admin views
    def admin(self, method: str, path: str):
        return http_request(HOST, self.admin_port, method, path)

    def status(self) -> dict:
        return json.loads(self.admin("GET", "/status").body)

    def states(self, upstream="u") -> dict:
        return {s["name"]: s["state"] for s in self.status()["upstreams"][upstream]["servers"]}

    def metric(self, name: str, **labels) -> float:
        text = self.admin("GET", "/metrics").text
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in text.splitlines():
            m = re.fullmatch(r"(\w+)(?:\{(.*)\})? (\S+)", line)
            if m and m.group(1) == name and ",".join(sorted((m.group(2) or "").split(","))) \
                    == want:
                return float(m.group(3))
        raise KeyError(f"{name}{{{want}}} not in /metrics")

    def wait_state(self, server: str, state: str, timeout=10.0):
        wait_until(lambda: self.states().get(server) == state, timeout,
                   what=f"server {server} {state} (states {self.states()})")

    # -- traffic
    def who(self, n: int, path="/", headers=None) -> dict:
        """n requests on new connections: {backend name or status: count}."""
        count = {}
        for _ in range(n):
            r = http_request(HOST, self.port, "GET", path, headers=headers)
            key = r.header("X-Backend") if r.status == 200 else r.status
            count[key] = count.get(key, 0) + 1
        return count


FAST_CHECKS = """\
health_check:
  path: /healthz
  interval: 100ms
  timeout: 500ms
  rise: 2
  fall: 2
"""


class ActiveChecks(HealthTestCase):
    def test_killed_backend_is_taken_out_and_rejoins_after_rise(self):
        b1, b2 = self.backends("b1", "b2")
        # No passive checks and no retries: only the active checks can keep errors away.
        self.tether([("b1", b1.port, {"max_fails": 0}), ("b2", b2.port, {"max_fails": 0})],
                    upstream=FAST_CHECKS + "retries: 0\n")
        self.assertEqual(self.who(10), {"b1": 5, "b2": 5})
        port = b1.port
        b1.kill()
        self.wait_state("b1", "down", timeout=3)
        self.assertEqual(self.who(20), {"b2": 20})
        self.assertEqual(self.admin("GET", "/readyz").status, 200)  # b2 is still up
        self.assertGreaterEqual(self.metric("tether_health_checks_total", upstream="u",
                                            server="b1", result="error"), 2)
        started = time.monotonic()
        self.backend("b1", port=port)  # restarted on the same address
        self.wait_state("b1", "up", timeout=3)
        # rise 2 at 100 ms: at least one interval after the first good check.
        self.assertGreaterEqual(time.monotonic() - started, 0.1)
        self.assertEqual(self.who(10), {"b1": 5, "b2": 5})

    def test_failing_healthz_takes_server_out_though_it_still_answers(self):
        b1, b2 = self.backends("b1", "b2")
        self.tether([b1, b2], upstream=FAST_CHECKS)
        self.assertEqual(http_request(HOST, b1.port, "GET", "/set-health?code=503").status, 200)
        self.wait_state("b1", "down", timeout=3)
        self.assertEqual(self.who(10), {"b2": 10})
        self.assertGreaterEqual(self.metric("tether_health_checks_total", upstream="u",
                                            server="b1", result="bad_status"), 2)
        http_request(HOST, b1.port, "GET", "/set-health?code=204")  # within 200-399
        self.wait_state("b1", "up", timeout=3)
        self.assertEqual(self.who(10), {"b1": 5, "b2": 5})

    def test_all_down_makes_readyz_503_and_requests_503(self):
        b1, = self.backends("b1")
        self.tether([b1], upstream=FAST_CHECKS)
        self.assertEqual(self.admin("GET", "/readyz").status, 200)
        http_request(HOST, b1.port, "GET", "/set-health?code=500")
        self.wait_state("b1", "down", timeout=3)
        self.assertEqual(self.admin("GET", "/readyz").status, 503)
        r = http_request(HOST, self.port, "GET", "/")
        self.assertEqual(r.status, 503)
        self.assertEqual(r.header("Retry-After"), "1")

    def test_initial_down_server_is_usable_once_rise_is_met(self):
        b1, = self.backends("b1")
        # b1's /healthz fails until the test says so. Before, this test read the state once
        # right after start and expected `down` from `initial: down` alone; on a loaded
        # machine tether could take longer to be seen listening than the first two checks
        # (rise 2) took to pass, and it read `up`. Now no check can pass before the switch,
        # so `down` holds however late the test looks; and `initial: up` would still show
        # `up` here until `fall` failed checks (>= 1 interval of 1 s).
        http_request(HOST, b1.port, "GET", "/set-health?code=503")
        checks = FAST_CHECKS.replace("interval: 100ms", "interval: 1s") + "  initial: down\n"
        self.tether([b1], upstream=checks)
        self.assertEqual(self.states()["b1"], "down")
        self.assertEqual(self.admin("GET", "/readyz").status, 503)
        self.assertEqual(http_request(HOST, self.port, "GET", "/").status, 503)
        checks_before = b1.stats()["health_checks"]
        http_request(HOST, b1.port, "GET", "/set-health?code=200")
        self.wait_state("b1", "up", timeout=5)
        # Usable once `rise` (2) good checks passed: at least two checks since the switch.
        self.assertGreaterEqual(b1.stats()["health_checks"] - checks_before, 2)
        self.assertEqual(self.admin("GET", "/readyz").status, 200)
        self.assertEqual(self.who(3), {"b1": 3})

    def test_one_prober_per_server_per_process_not_per_worker(self):
        b1, = self.backends("b1")
        checks = FAST_CHECKS.replace("interval: 100ms", "interval: 200ms")
        self.tether([b1], workers=4, upstream=checks)
        first = b1.stats()["health_checks"]
        time.sleep(2.0)
        n = b1.stats()["health_checks"] - first
        # 2 s / 200 ms = 10 checks from one prober; 4 workers each probing would make ~40.
        self.assertTrue(7 <= n <= 13, f"{n} checks in 2 s at a 200 ms interval")

    def test_probe_timeout_counts_as_failure(self):
        b1, b2 = self.backends("b1", "b2")
        # /sleep answers after 1 s: a check of it times out (timeout 200 ms).
        checks = FAST_CHECKS.replace("/healthz", "/sleep?ms=1000").replace("500ms", "200ms")
        self.tether([b1, b2], upstream=checks)
        self.wait_state("b1", "down", timeout=4)
        self.assertGreaterEqual(self.metric("tether_health_checks_total", upstream="u",
                                            server="b1", result="timeout"), 2)


class PassiveChecks(HealthTestCase):
    def test_max_fails_within_fail_timeout_takes_server_out(self):
        b2, = self.backends("b2")
        dead = dead_address()
        self.tether([("b1", dead, {"max_fails": 2, "fail_timeout": "2s"}), b2], workers=1,
                    upstream={"retries": 1})
        # Every request succeeds: a refused connect is retried on b2.
        self.assertEqual(self.who(10), {"b2": 10})
        self.assertEqual(self.states()["b1"], "down")
        self.assertEqual(self.metric("tether_upstream_server_failures_total", upstream="u",
                                     server="b1"), 2)  # out after 2: no more attempts
        self.assertEqual(self.metric("tether_upstream_server_ejections_total", upstream="u",
                                     server="b1"), 1)
        # Back after fail_timeout: a backend now listens there and gets traffic again.
        self.backend("b1", port=int(dead.rsplit(":", 1)[1]))
        self.wait_state("b1", "up", timeout=4)
        self.assertEqual(self.who(10), {"b1": 5, "b2": 5})

    def test_5xx_answers_are_not_failures(self):
        b1, b2 = self.backends("b1", "b2")
        self.tether([("b1", b1.port, {"max_fails": 1}), ("b2", b2.port, {"max_fails": 1})])
        for _ in range(6):
            self.assertEqual(http_request(HOST, self.port, "GET", "/status?code=503").status, 503)
        self.assertEqual(self.states(), {"b1": "up", "b2": "up"})

    def answers_with_b1_failing(self, upstream: dict) -> list:
        """12 GETs of /healthz, which b1 answers 500 and b2 200: [(backend, status)]."""
        b1, b2 = self.backends("b1", "b2")
        self.b1, self.b2 = b1, b2
        http_request(HOST, b1.port, "GET", "/set-health?code=500")
        self.tether([("b1", b1.port, {"max_fails": 3, "fail_timeout": "30s"}), b2], workers=1,
                    upstream=upstream)
        answers = []
        for _ in range(12):
            r = http_request(HOST, self.port, "GET", "/healthz")
            answers.append((r.header("X-Backend"), r.status))
        return answers

    def test_5xx_of_one_server_is_relayed_and_not_counted_by_default(self):
        answers = self.answers_with_b1_failing({})
        self.assertEqual(answers.count(("b1", 500)), 6, answers)  # round robin, never out
        self.assertEqual(self.states(), {"b1": "up", "b2": "up"})
        self.assertEqual(self.metric("tether_upstream_server_failures_total", upstream="u",
                                     server="b1"), 0)

    def test_fail_on_status_counts_5xx_toward_max_fails(self):
        answers = self.answers_with_b1_failing({"fail_on_status": ["500-599"]})
        # b1's first three 500s reach the client as they are (never retried: they were
        # sent); the third takes b1 out (max_fails 3) and b2 gets the rest.
        self.assertEqual(answers.count(("b1", 500)), 3, answers)
        self.assertEqual(answers.count(("b2", 200)), 9, answers)
        self.assertEqual(answers[-6:], [("b2", 200)] * 6, answers)
        self.assertEqual(self.states(), {"b1": "down", "b2": "up"})
        self.assertEqual(self.metric("tether_upstream_server_failures_total", upstream="u",
                                     server="b1"), 3)
        self.assertEqual(self.metric("tether_upstream_server_ejections_total", upstream="u",
                                     server="b1"), 1)
        # Each client request reached one backend once: none was re-sent elsewhere.
        self.assertEqual(self.b1.stats()["health_checks"], 3)
        self.assertEqual(self.b2.stats()["health_checks"], 9)

    def test_fail_on_status_counts_only_the_listed_statuses(self):
        answers = self.answers_with_b1_failing({"fail_on_status": [502, "503-504"]})
        self.assertEqual(answers.count(("b1", 500)), 6, answers)
        self.assertEqual(self.states(), {"b1": "up", "b2": "up"})

    def test_response_timeout_is_a_failure(self):
        b1, b2 = self.backends("b1", "b2")
        self.tether([("b1", b1.port, {"max_fails": 1, "fail_timeout": "5s"}), b2], workers=1,
                    timeouts={"upstream_response": "200ms"})
        results = [http_request(HOST, self.port, "GET", "/sleep?ms=600").status
                   for _ in range(2)]
        self.assertEqual(results, [504, 504])  # one on each server (round robin)
        self.assertEqual(self.states(), {"b1": "down", "b2": "up"})  # max_fails 1 and 3
        self.assertEqual(self.who(4), {"b2": 4})


class Retries(HealthTestCase):
    def test_connect_refused_is_retried_on_another_server(self):
        b1, = self.backends("b1")
        self.tether([("dead", dead_address(), {"max_fails": 0}), b1], workers=1,
                    upstream={"retries": 1, "balance": "round_robin"})
        self.assertEqual(self.who(20), {"b1": 20})
        # A body that was not sent yet is retried too.
        for _ in range(4):
            r = http_request(HOST, self.port, "POST", "/echo", body=b"x" * 10000)
            self.assertEqual((r.status, r.body), (200, b"x" * 10000))

    def test_without_retries_a_refused_connect_is_a_502(self):
        b1, = self.backends("b1")
        self.tether([("dead", dead_address(), {"max_fails": 0}), b1], workers=1,
                    upstream={"retries": 0, "balance": "round_robin"})
        self.assertEqual(self.who(10), {"b1": 5, 502: 5})

    def test_never_twice_the_same_server(self):
        # max_fails high enough to count every attempt without taking the server out.
        self.tether([("dead", dead_address(), {"max_fails": 1000})], workers=1,
                    upstream={"retries": 5})
        self.assertEqual(http_request(HOST, self.port, "GET", "/").status, 502)
        self.assertEqual(self.metric("tether_upstream_server_failures_total", upstream="u",
                                     server="dead"), 1)

    def test_retries_bounded_by_setting(self):
        b1, = self.backends("b1")
        dead = [(f"d{i}", dead_address(), {"max_fails": 1000}) for i in range(3)]
        self.tether([*dead, b1], workers=1, upstream={"retries": 1, "balance": "round_robin"})
        statuses = [http_request(HOST, self.port, "GET", "/").status for _ in range(8)]
        # Two attempts per request: a request whose two picks are both dead servers fails.
        self.assertIn(502, statuses)
        failures = sum(self.metric("tether_upstream_server_failures_total", upstream="u",
                                   server=f"d{i}") for i in range(3))
        # Each 502 made exactly two attempts; each 200 at most one failed one before.
        failed, ok = statuses.count(502), statuses.count(200)
        self.assertEqual(failed + ok, 8)
        self.assertGreaterEqual(failures, 2 * failed)
        self.assertLessEqual(failures, 2 * failed + ok)


class Backups(HealthTestCase):
    def test_backup_takes_new_clients_only_when_no_primary_is_usable(self):
        p1, p2, bk = self.backends("p1", "p2", "bk")
        self.tether([p1, p2, ("bk", bk.port, {"backup": True})], upstream=FAST_CHECKS)
        self.assertEqual(self.who(10), {"p1": 5, "p2": 5})
        http_request(HOST, p1.port, "GET", "/set-health?code=503")
        self.wait_state("p1", "down", timeout=3)
        self.assertEqual(self.who(6), {"p2": 6})  # one primary left: still no backup
        http_request(HOST, p2.port, "GET", "/set-health?code=503")
        self.wait_state("p2", "down", timeout=3)
        self.assertEqual(self.who(6), {"bk": 6})
        http_request(HOST, p1.port, "GET", "/set-health?code=200")
        self.wait_state("p1", "up", timeout=3)
        self.assertEqual(self.who(6), {"p1": 6})

    def test_max_conns_is_respected(self):
        b1, = self.backends("b1")
        self.tether([("b1", b1.port, {"max_conns": 1})], workers=1)
        ws = WebSocket.connect(HOST, self.port, "/chat")  # holds b1's one connection
        try:
            self.assertEqual(http_request(HOST, self.port, "GET", "/").status, 503)
        finally:
            ws.close()
        wait_until(lambda: http_request(HOST, self.port, "GET", "/").status == 200, 3,
                   what="b1 free again")

    def tunnel(self) -> tuple:
        """A WebSocket held open through tether: (socket, backend name)."""
        ws = WebSocket.connect(HOST, self.port, "/chat")
        self.addCleanup(ws.abort)
        ws.send_text("whoami")
        return ws, ws.recv_text()

    def tunnel_or_none(self) -> tuple | None:
        """tunnel(), or None when tether answered the upgrade 503."""
        try:
            return self.tunnel()
        except ValueError as e:
            if e.args[1].status != 503:
                raise
            return None

    def who_kept(self, n: int) -> dict:
        """Like who(), on one keep-alive connection: its requests are served one after the
        other by one worker, so a request's own count is gone before the next one is placed
        (on separate connections the next one may reach another worker first)."""
        count = {}
        for _ in range(n):
            if getattr(self, "_kept", None) is None:
                self._kept = HttpConnection(HOST, self.port)
                self.addCleanup(self._kept.close)
            r = self._kept.request("GET", "/")
            if (r.header("Connection") or "").lower() == "close":
                self._kept.close()
                self._kept = None
            key = r.header("X-Backend") if r.status == 200 else r.status
            count[key] = count.get(key, 0) + 1
        return count

    def test_backup_takes_new_clients_when_every_primary_is_full_or_drained(self):
        p1, p2, bk = self.backends("p1", "p2", "bk")
        # max_conns counts per process: the 2 workers share each server's count.
        self.tether([("p1", p1.port, {"max_conns": 1}), ("p2", p2.port, {"max_conns": 1}),
                     ("bk", bk.port, {"backup": True, "max_conns": 1})], workers=2)
        held = dict(self.tunnel() for _ in range(2))  # one tunnel fills each primary
        self.assertEqual(sorted(held.values()), ["p1", "p2"])
        by_server = {name: ws for ws, name in held.items()}
        # Both primaries up but full: the backup takes new clients (as nginx does).
        self.assertEqual(self.who_kept(6), {"bk": 6})
        # The last kept-alive request holds bk's one connection until tether has written its
        # answer, which the client can read first: a new connection on the other worker may
        # find bk full for that moment (503).
        ws_bk, on = wait_until(self.tunnel_or_none, 3, what="a tunnel to the backup")
        self.assertEqual(on, "bk")
        # Primaries and backup all full: 503 with Retry-After, whichever worker answers.
        for _ in range(6):
            r = http_request(HOST, self.port, "GET", "/")
            self.assertEqual((r.status, r.header("Retry-After")), (503, "1"))
        self.assertEqual(self.states(), {"p1": "up", "p2": "up", "bk": "up"})
        ws_bk.close()
        wait_until(lambda: self.who_kept(1) == {"bk": 1}, 3, what="the backup has room again")
        # A primary with room again gets the new clients, not the backup.
        by_server["p1"].close()
        wait_until(lambda: self.who_kept(1) == {"p1": 1}, 3, what="p1 has room again")
        self.assertEqual(self.who_kept(4), {"p1": 4})
        # p1 drained, p2 full: the backup again.
        self.assertEqual(self.admin("POST", "/upstreams/u/servers/p1/drain").status, 200)
        self.assertEqual(self.who_kept(4), {"bk": 4})
        self.assertEqual(self.admin("POST", "/upstreams/u/servers/p1/enable").status, 200)
        self.assertEqual(self.who_kept(4), {"p1": 4})


class Drain(HealthTestCase):
    COOKIE = {"affinity": "cookie", "cookie": {"secret": "k" * 32}}

    def cookie_for(self, server: str) -> str:
        for _ in range(20):
            r = http_request(HOST, self.port, "GET", "/")
            if r.header("X-Backend") == server:
                return r.header("Set-Cookie").split(";")[0]
        raise AssertionError(f"no client placed on {server}")

    def test_drain_keeps_bound_clients_takes_no_new_ones_and_survives_reload(self):
        s1, s2 = self.backends("s1", "s2")
        self.tether([s1, s2], upstream=self.COOKIE)
        bound = self.cookie_for("s1")
        self.assertEqual(self.admin("POST", "/upstreams/u/servers/s1/drain").status, 200)
        self.assertEqual(self.states()["s1"], "draining")
        self.assertEqual(self.who(10), {"s2": 10})                       # new clients
        self.assertEqual(self.who(5, headers={"Cookie": bound}), {"s1": 5})  # bound one
        # A reload (that also re-weights s1) keeps the drain.
        self.t.reload(self.config(servers=[("s1", s1.port, {"weight": 3}), ("s2", s2.port)]))
        wait_until(lambda: self.status()["config_generation"] == 2, 5, what="reload")
        self.assertEqual(self.states()["s1"], "draining")
        self.assertEqual(self.who(10), {"s2": 10})
        self.assertEqual(self.who(5, headers={"Cookie": bound}), {"s1": 5})
        self.assertEqual(self.admin("POST", "/upstreams/u/servers/s1/enable").status, 200)
        self.assertEqual(self.states()["s1"], "up")
        self.assertIn("s1", self.who(8))

    def test_drain_of_unknown_server_is_404(self):
        s1, = self.backends("s1")
        self.tether([s1])
        self.assertEqual(self.admin("POST", "/upstreams/u/servers/nope/drain").status, 404)
        self.assertEqual(self.admin("POST", "/upstreams/nope/servers/s1/drain").status, 404)


class Reload(HealthTestCase):
    def test_reload_adds_and_removes_servers_while_a_tunnel_stays_open(self):
        s1, s2, s3 = self.backends("s1", "s2", "s3")
        self.tether([s1, s2], workers=1, upstream=FAST_CHECKS)
        ws = WebSocket.connect(HOST, self.port, "/chat")
        self.addCleanup(ws.abort)
        ws.send_text("whoami")
        on = ws.recv_text()
        keep = "s2" if on == "s1" else "s1"
        ports = {"s1": s1.port, "s2": s2.port, "s3": s3.port}
        # Remove the tunnel's server, keep the other, add s3.
        self.t.reload(self.config(servers=[(keep, ports[keep]), ("s3", s3.port)]))
        wait_until(lambda: self.status()["config_generation"] == 2, 5, what="reload")
        self.assertEqual(set(self.states()), {keep, "s3"})
        self.wait_state("s3", "up", timeout=3)
        self.assertEqual(self.who(10), {keep: 5, "s3": 5})
        for i in range(5):  # the tunnel to the removed server still works
            ws.send_text(f"m{i}")
            self.assertEqual(ws.recv_text(), f"m{i}")
        ws.send_text("whoami")
        self.assertEqual(ws.recv_text(), on)
        self.assertEqual(ws.close(), 1000)

    def test_bad_reload_is_refused_with_the_check_messages(self):
        s1, s2 = self.backends("s1", "s2")
        self.tether([s1], workers=1)
        bad = self.config(servers=[("s2", s2.port, {"wieght": 2})])
        code, _, check_err = tether_check(bad)
        self.assertEqual(code, 1)
        message = re.search(r"tether\.yaml:\d+:\d+: .*wieght.*", check_err).group(0)
        self.t.reload(bad)
        wait_until(lambda: "reload refused" in self.t.logs(), 5, what="refusal logged")
        self.assertIn(message, self.t.logs())  # same FILE:LINE:COL: message as -t
        self.assertEqual(self.status()["config_generation"], 1)
        self.assertEqual(self.who(4), {"s1": 4})  # the old config stays

    @staticmethod
    def two_upstreams(listen: list, admin_port: int, s1: Backend, s2: Backend) -> str:
        """Listeners [(port, upstream)] before upstreams u (s1) and v (s2)."""
        lines = ["workers: 2", f"admin:\n  address: {HOST}:{admin_port}", "listen:"]
        lines += [f"  - address: {HOST}:{port}\n    upstream: {u}" for port, u in listen]
        lines += ["upstreams:", "  u:", "    servers:", f"      - name: s1\n        address: "
                  f"{s1.address}", "  v:", "    servers:",
                  f"      - name: s2\n        address: {s2.address}",
                  "access_log:\n  path: off"]
        return "\n".join(lines) + "\n"

    def test_reload_adds_and_removes_listeners(self):
        s1, s2 = self.backends("s1", "s2")
        a, b, self.admin_port = free_ports(3)
        t = Tether(self.two_upstreams([(a, "u")], self.admin_port, s1, s2),
                   ports=[a, self.admin_port])
        self.addCleanup(t.close)
        a, self.admin_port = t.ports
        ws = WebSocket.connect(HOST, a, "/chat")
        self.addCleanup(ws.abort)
        idle = HttpConnection(HOST, a)
        self.addCleanup(idle.close)
        self.assertEqual(idle.request("GET", "/").header("X-Backend"), "s1")
        t.reload(self.two_upstreams([(b, "v")], self.admin_port, s1, s2))
        wait_until(lambda: self.status()["config_generation"] == 2, 5, what="reload")
        wait_port(b, 5)
        self.assertEqual(http_request(HOST, b, "GET", "/").header("X-Backend"), "s2")
        with self.assertRaises(ConnectionRefusedError):
            http_request(HOST, a, "GET", "/", timeout=2)
        self.assertTrue(idle.peer_closed(2), "idle keep-alive connection on a removed listener")
        ws.send_text("whoami")  # a tunnel accepted on the removed listener goes on
        self.assertEqual(ws.recv_text(), "s1")
        metrics = self.admin("GET", "/metrics").text
        self.assertIn(f'listener="{HOST}:{b}"', metrics)
        self.assertNotIn(f'listener="{HOST}:{a}"', metrics)
        # Back to both: the first address is listened on again.
        t.reload(self.two_upstreams([(a, "u"), (b, "v")], self.admin_port, s1, s2))
        wait_until(lambda: self.status()["config_generation"] == 3, 5, what="reload")
        wait_port(a, 5)
        self.assertEqual(http_request(HOST, a, "GET", "/").header("X-Backend"), "s1")
        self.assertEqual(http_request(HOST, b, "GET", "/").header("X-Backend"), "s2")
        self.assertIn("reload: listening on", t.logs())
        self.assertIn("reload: stopped listening on", t.logs())

    def test_reload_with_a_listener_that_cannot_bind_is_refused(self):
        s1, s2 = self.backends("s1", "s2")
        a, self.admin_port = free_ports(2)
        t = Tether(self.two_upstreams([(a, "u")], self.admin_port, s1, s2),
                   ports=[a, self.admin_port])
        self.addCleanup(t.close)
        a, self.admin_port = t.ports
        taken = socket.socket()  # another process's port (no SO_REUSEPORT)
        self.addCleanup(taken.close)
        taken.bind((HOST, 0))
        taken.listen()
        busy = taken.getsockname()[1]
        t.reload(self.two_upstreams([(a, "u"), (busy, "v")], self.admin_port, s1, s2))
        wait_until(lambda: "reload refused" in t.logs(), 5, what="refusal")
        self.assertIn(f"cannot listen on {HOST}:{busy}", t.logs())
        self.assertEqual(self.status()["config_generation"], 1)
        self.assertEqual(http_request(HOST, a, "GET", "/").header("X-Backend"), "s1")

    def test_reload_applies_health_settings(self):
        s1, = self.backends("s1")
        self.tether([s1], workers=1)  # no health_check: s1 is up whatever /healthz says
        http_request(HOST, s1.port, "GET", "/set-health?code=503")
        time.sleep(0.3)
        self.assertEqual(self.states()["s1"], "up")
        self.t.reload(self.config(upstream=FAST_CHECKS))
        self.wait_state("s1", "down", timeout=3)
        self.t.reload(self.config())  # checks removed again: up
        self.wait_state("s1", "up", timeout=3)


if __name__ == "__main__":
    unittest.main()
