"""A real Prometheus server (Debian package `prometheus`) scraping a running tether every
second, with the shipped alert rules loaded. Through Prometheus' HTTP API the test checks that
the target is up and that the request, tunnel and affinity counters moved exactly as the
traffic the test sent, that the shipped rules load and evaluate, and that every query of the
shipped Grafana dashboard is valid PromQL that Prometheus runs.

Prometheus runs on a free 127.0.0.1 port with its data in a temp dir; it is stopped by PID.
Skipped without the `prometheus` binary, except under CI=true.
"""

import json
import os
import re
import shutil
import tempfile
import time
import unittest
import urllib.parse
import urllib.request

import socket

from harness import (HOST, START_TIMEOUT, Backend, LoggedProcess, PortTaken, WebSocket, _Reader,
                     _stop_process, build_request, get_from, http_request, on_free_ports,
                     raise_if_port_taken, read_response)
from redis_fixture import RedisServer
from obs_common import CONF, Load, ObsTether, cookie_of, require_tool, wait_for
from test_observability_metrics import promtool_check_metrics


# How long a value may take to show in Prometheus: a scrape every second, and tether's counters
# move with its worker ticks (WebSocket frames) or after the response's last byte. Under load
# (sanitizer builds beside other suites) scrapes and ticks run late; the waits end when reached.
WAIT = 60.0


class Prometheus(LoggedProcess):
    """A real Prometheus scraping `targets` every second with the alert rules `rules`."""

    def __init__(self, targets: list[str], rules: str):
        directory = tempfile.mkdtemp(prefix="tether-prom-")
        shutil.copy(rules, os.path.join(directory, "alerts.yml"))
        config = os.path.join(directory, "prometheus.yml")
        with open(config, "w") as f:
            f.write(f"""global:
  scrape_interval: 1s
  scrape_timeout: 900ms
  evaluation_interval: 1s
rule_files: [alerts.yml]
scrape_configs:
  - job_name: tether
    static_configs:
      - targets: {json.dumps(targets)}
""")

        def start(ports: list[int]) -> None:  # again on another port if it was taken
            self.port = ports[0]
            super(Prometheus, self).__init__(
                [require_tool("prometheus"), f"--config.file={config}",
                 f"--storage.tsdb.path={os.path.join(directory, 'data')}",
                 f"--web.listen-address={HOST}:{self.port}", "--log.level=warn"],
                "prometheus", directory=directory)
            try:
                wait_for(self._ready, START_TIMEOUT, 0.2, "prometheus ready")
            except PortTaken:
                _stop_process(self.proc, 5.0)  # the directory stays for the next start
                self.log.close()
                raise
        try:
            on_free_ports(start, 1)
        except BaseException:
            self.close()
            raise

    def _ready(self):
        if self.proc.poll() is not None:
            message = f"prometheus exited: {self.logs()}"
            raise_if_port_taken(self.logs(), message)
            raise RuntimeError(message)
        try:
            with urllib.request.urlopen(f"http://{HOST}:{self.port}/-/ready", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def api(self, path: str, **params) -> dict:
        url = f"http://{HOST}:{self.port}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.load(r)
        if body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {body}")
        return body["data"]

    def value(self, query: str):
        """The single value of an instant vector query, or None when it is empty."""
        result = self.api("query", query=query)["result"]
        if not result:
            return None
        if len(result) != 1:
            raise AssertionError(f"{query}: {len(result)} series")
        return float(result[0]["value"][1])

    def wait_value(self, query: str, expected: float, timeout: float = WAIT):
        self.wait_until(query, lambda v: v == expected, f"== {expected}", timeout)

    def wait_until(self, query: str, check, what: str, timeout: float = WAIT):
        """Polls `query` until check(its value) holds; AssertionError with the last value
        after `timeout` s. Ends as soon as it holds: the bound only matters under load."""
        last = []

        def reached():
            last[:] = [self.value(query)]
            return last[0] is not None and check(last[0])
        try:
            wait_for(reached, timeout, 0.25, f"{query} {what}")
        except TimeoutError:
            raise AssertionError(f"{query}: {last[0]!r}, expected {what}") from None


class PrometheusScrapeTest(unittest.TestCase):
    def setUp(self):
        require_tool("prometheus")
        self.obs = ObsTether(workers=2)
        self.addCleanup(self.obs.close)
        self.prom = Prometheus([f"{HOST}:{self.obs.ports['admin']}"],
                               os.path.join(CONF, "prometheus", "alerts.yml"))
        self.addCleanup(self.prom.close)

    def test_target_up_and_counters_follow_traffic(self):
        prom, obs = self.prom, self.obs
        web, ip = obs.ports["web"], obs.ports["ip"]
        prom.wait_value('up{job="tether"}', 1)
        # The target's health is its last scrape's: a scrape of a loaded tether can run past
        # scrape_timeout once (up 0 for that scrape), so wait for one that answered.
        wait_for(lambda: [(t["labels"]["job"], t["health"])
                          for t in prom.api("targets")["activeTargets"]] == [("tether", "up")],
                 WAIT, 0.25, "the only target: tether, up")

        # 30 new clients (no cookie), then one of them comes back 10 times with its cookie.
        cookie = None
        for _ in range(30):
            r = http_request(HOST, web, "GET", "/")
            self.assertEqual(r.status, 200)
            cookie = cookie_of(r)
        for _ in range(10):
            self.assertEqual(http_request(HOST, web, "GET", "/", headers={"Cookie": cookie}).status,
                             200)
        for _ in range(5):
            self.assertEqual(http_request(HOST, ip, "GET", "/").status, 200)
        # 4 WebSocket tunnels with 5 echoes each; 2 stay open.
        sockets = []
        for _ in range(4):
            ws = WebSocket.connect(HOST, web, "/chat")
            for i in range(5):
                ws.send_text(f"hi {i}")
                self.assertEqual(ws.recv_text(), f"hi {i}")
            sockets.append(ws)
        for ws in sockets[2:]:
            ws.close()
        self.addCleanup(lambda: [ws.abort() for ws in sockets[:2]])

        q = 'sum(tether_http_requests_total{job="tether",upstream="web",code="200"})'
        prom.wait_value(q, 40)
        prom.wait_value('sum(tether_http_requests_total{upstream="web",code="101"})', 4)
        prom.wait_value('sum(tether_websocket_upgrades_total{upstream="web",result="ok"})', 4)
        prom.wait_value('sum(tether_websocket_tunnels_active{upstream="web"})', 2)
        # Frames of the open tunnels are counted on the worker's next tick (100 ms), which can
        # come after the scrape that saw the other two close.
        prom.wait_until('sum(tether_websocket_frames_total{upstream="web",direction="to_server"})',
                        lambda v: v >= 20, ">= 20")
        lookups = 'sum(tether_affinity_lookups_total{{upstream="{}",result="{}"}})'
        prom.wait_value(lookups.format("web", "miss"), 30 + 4)  # the tunnels came without cookie
        prom.wait_value(lookups.format("web", "local_hit"), 10)
        prom.wait_value(lookups.format("ip", "miss"), 1)
        prom.wait_value(lookups.format("ip", "local_hit"), 4)
        prom.wait_value('sum(tether_affinity_bindings{upstream="ip"})', 1)

        # The counters keep moving: 25 more requests, and the tunnels close.
        for _ in range(25):
            http_request(HOST, web, "GET", "/", headers={"Cookie": cookie})
        for ws in sockets[:2]:
            ws.close()
        prom.wait_value(q, 65)
        prom.wait_value(lookups.format("web", "local_hit"), 35)
        prom.wait_value('sum(tether_websocket_tunnels_active{upstream="web"})', 0)
        # Every request went to s1 or s2, and the server label says which (round_robin).
        per_server = prom.api("query", query='sum by (server) '
                              '(tether_http_requests_total{upstream="web",code="200"})')["result"]
        counts = {r["metric"]["server"]: float(r["value"][1]) for r in per_server}
        self.assertEqual(set(counts), {"s1", "s2"})
        self.assertEqual(sum(counts.values()), 65)
        # The rate Prometheus computes from tether's counter is a real number of requests/s.
        rate = prom.value('sum(rate(tether_http_requests_total{upstream="web"}[1m]))')
        self.assertGreater(rate, 0)

    def test_shipped_rules_and_dashboard_queries_run(self):
        prom = self.prom
        prom.wait_value('up{job="tether"}', 1)

        def rules_evaluated():
            groups = prom.api("rules")["groups"]
            rules = [r for g in groups for r in g["rules"]]
            return rules if rules and all(r.get("lastEvaluation", "").startswith("2")
                                          and not r["lastEvaluation"].startswith("0001")
                                          for r in rules) else None
        rules = wait_for(rules_evaluated, WAIT, 0.5, "rules evaluated")
        self.assertGreaterEqual(len(rules), 5)
        for r in rules:
            self.assertEqual(r["health"], "ok", r)
        # Nothing is wrong with this tether: no alert is pending or firing, except none.
        firing = [a for a in prom.api("alerts")["alerts"]]
        self.assertEqual(firing, [], "alerts on a healthy tether")

        with open(os.path.join(CONF, "grafana", "tether-dashboard.json")) as f:
            dashboard = json.load(f)
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"].replace("$__rate_interval", "1m")
                expr = re.sub(r"\$(instance|upstream|job)", ".+", expr)
                with self.subTest(panel=panel["title"], expr=expr):
                    prom.api("query", query=expr)  # raises unless Prometheus accepts it


def body_from(client_ip: str, port: int) -> bytes:
    """The body of a GET / from a given loopback source address (a client of its own)."""
    r = get_from(client_ip, port)
    if r.status != 200:
        raise AssertionError(f"{client_ip}: {r.status}")
    return r.body


class PrometheusReplicasTest(unittest.TestCase):
    """Two replicas sharing a real redis-server, both scraped: the replicas agree, and the
    metrics say how (misses on the first, redis_hit then local_hit on the second)."""

    def setUp(self):
        require_tool("prometheus")
        require_tool("redis-server")
        self.redis = RedisServer()
        self.addCleanup(self.redis.close)
        self.backends = [Backend("s1"), Backend("s2")]
        for b in self.backends:
            self.addCleanup(b.__exit__, None, None, None)
        self.a = ObsTether(backends=self.backends, redis_port=self.redis.port)
        self.addCleanup(self.a.close)
        self.b = ObsTether(backends=self.backends, redis_port=self.redis.port)
        self.addCleanup(self.b.close)
        self.targets = [f"{HOST}:{r.ports['admin']}" for r in (self.a, self.b)]
        self.prom = Prometheus(self.targets, os.path.join(CONF, "prometheus", "alerts.yml"))
        self.addCleanup(self.prom.close)

    def test_replicas_agree_and_metrics_show_redis_hits(self):
        prom, a, b = self.prom, self.a, self.b
        ta, tb = self.targets
        prom.wait_value('count(up{job="tether"} == 1)', 2)
        prom.wait_value('sum(tether_redis_up)', 2)
        clients = [f"127.0.0.{20 + i}" for i in range(6)]
        on_a = [body_from(ip, a.ports["ip"]) for ip in clients]
        on_b = [body_from(ip, b.ports["ip"]) for ip in clients]
        again_b = [body_from(ip, b.ports["ip"]) for ip in clients]
        self.assertEqual(on_a, on_b, "replica b routes each client where replica a placed it")
        self.assertEqual(on_b, again_b)
        q = 'sum(tether_affinity_lookups_total{{upstream="ip",instance="{}",result="{}"}})'
        prom.wait_value(q.format(ta, "miss"), 6)
        prom.wait_value(q.format(tb, "redis_hit"), 6)
        prom.wait_value(q.format(tb, "local_hit"), 6)
        prom.wait_value(q.format(tb, "miss"), 0)
        prom.wait_value('count(sum by (instance) '
                        '(tether_redis_command_duration_seconds_count) > 0)', 2)
        wait_for(lambda: prom.value('min(tether_redis_used_memory_bytes)') or 0, WAIT, 0.5,
                 "used_memory from INFO")
        # A scrape with the Redis families, under load, still passes promtool.
        with Load(a.ports["web"], ws_port=a.ports["web"], threads=2) as load:
            wait_for(lambda: load.requests > 100, WAIT, what="load running")
            rc, out = promtool_check_metrics(a.metrics_text())
        self.assertEqual((rc, out), (0, ""), out)
        self.assertEqual(load.errors, [])


if __name__ == "__main__":
    unittest.main()
