"""The deployment examples under conf/examples: every tether config in them passes
`tether -t`, every file passes the validator its format has where one can be installed
(docker-compose for the Compose file, HAProxy for haproxy.cfg, the Kubernetes API schemas
of the npm package kubernetes-models for the manifests, systemd-analyze for the unit), and
the pieces agree with each other: names, ports, paths, signals and grace periods.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path

import harness

try:
    import yaml
except ImportError:  # python3-yaml is in tools/packages.txt
    yaml = None

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "conf" / "examples"
COMPOSE = EXAMPLES / "compose"
K8S = EXAMPLES / "k8s"
SYSTEMD = EXAMPLES / "systemd"
DEPLOY = ROOT / "tests" / "deploy"


def run(args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True,
                          timeout=kw.pop("timeout", 120), stdin=subprocess.DEVNULL, **kw)


def tether_t(text: str) -> None:
    code, out, err = harness.tether_check(text)
    if code != 0:
        raise AssertionError(f"tether -t refused it:\n{out}{err}\n{text}")


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def seconds(duration: str) -> float:
    m = re.fullmatch(r"(\d+)(ms|s|m|h)", str(duration))
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]


@unittest.skipIf(yaml is None, "python3-yaml not installed")
class ComposeExample(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.compose = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())
        cls.services = cls.compose["services"]
        cls.tether_text = (COMPOSE / "tether.yaml").read_text()
        cls.tether = yaml.safe_load(cls.tether_text)

    def test_compose_file_passes_docker_compose_config(self):
        if not shutil.which("docker-compose"):
            self.skipTest("docker-compose not installed")
        done = run(["docker-compose", "-f", COMPOSE / "docker-compose.yml", "config", "-q"],
                   env={**os.environ, "TETHER_COOKIE_SECRET": "x"})
        self.assertEqual(done.returncode, 0, done.stderr)

    def test_haproxy_cfg_passes_haproxy_check(self):
        if not shutil.which("haproxy"):
            self.skipTest("haproxy not installed")
        done = run(["haproxy", "-c", "-f", COMPOSE / "haproxy.cfg"])
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)

    def test_tether_config_passes_tether_t(self):
        tether_t(self.tether_text)

    def test_three_socket_io_servers_with_the_redis_adapter(self):
        io = sorted(s for s, v in self.services.items() if v.get("build") == "./app")
        self.assertEqual(io, ["io1", "io2", "io3"])
        for name in io:
            env = self.services[name]["environment"]
            self.assertEqual(env["NAME"], name)
            self.assertEqual(env["REDIS_URL"], "redis://redis:6379")
        server_js = (COMPOSE / "app" / "server.js").read_text()
        self.assertIn("@socket.io/redis-adapter", server_js)
        self.assertIn('"/healthz"', server_js)
        # tether's servers are exactly these services, on their PORT
        servers = self.tether["upstreams"]["io"]["servers"]
        self.assertEqual([(s["name"], s["address"]) for s in servers],
                         [(n, f"{n}:{self.services[n]['environment']['PORT']}") for n in io])
        self.assertEqual(self.tether["upstreams"]["io"]["health_check"]["path"], "/healthz")

    def test_app_dependencies_are_locked(self):
        pkg = json.loads((COMPOSE / "app" / "package.json").read_text())
        lock = json.loads((COMPOSE / "app" / "package-lock.json").read_text())
        for dep, version in pkg["dependencies"].items():
            self.assertEqual(lock["packages"][f"node_modules/{dep}"]["version"], version, dep)
        self.assertIn("npm ci", (COMPOSE / "app" / "Dockerfile").read_text())

    def test_two_tether_replicas_share_redis_and_config(self):
        replicas = [s for s, v in self.services.items() if v.get("image") == "tether:local"]
        self.assertEqual(sorted(replicas), ["tether1", "tether2"])
        shutdown = seconds(self.tether["timeouts"]["shutdown"])
        for name in replicas:
            svc = self.services[name]
            self.assertIn("./tether.yaml:/etc/tether/tether.yaml:ro", svc["volumes"])
            self.assertIn("TETHER_COOKIE_SECRET", svc["environment"])
            self.assertGreater(seconds(svc["stop_grace_period"]), shutdown)
            context = (COMPOSE / svc["build"]["context"]).resolve()
            self.assertTrue((context / svc["build"]["dockerfile"]).is_file())
        self.assertEqual(self.tether["redis"]["address"], "redis:6379")
        self.assertIn("redis", self.services)

    def test_one_port_in_front_of_both_replicas(self):
        lb = self.services["lb"]
        self.assertEqual(lb["ports"], ["8080:8080"])
        self.assertNotIn("ports", self.services["tether1"])
        cfg = (COMPOSE / "haproxy.cfg").read_text()
        self.assertRegex(cfg, r"(?m)^\s*bind :8080$")
        listen = port_of(self.tether["listen"][0]["address"])
        admin = port_of(self.tether["admin"]["address"])
        servers = re.findall(r"(?m)^\s*server (\S+) (\S+):(\d+)", cfg)
        self.assertEqual([(n, h, int(p)) for n, h, p in servers],
                         [("tether1", "tether1", listen), ("tether2", "tether2", listen)])
        self.assertRegex(cfg, rf"check port {admin}\b")
        self.assertRegex(cfg, r"uri /readyz")


@unittest.skipIf(yaml is None, "python3-yaml not installed")
class KubernetesExample(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.docs = {}
        for f in sorted(K8S.glob("*.yaml")):
            for doc in yaml.safe_load_all(f.read_text()):
                if doc:
                    cls.docs[(doc["kind"], doc["metadata"]["name"])] = doc
        cls.config_text = cls.docs[("ConfigMap", "tether-config")]["data"]["tether.yaml"]
        cls.config = yaml.safe_load(cls.config_text)
        cls.deploy = cls.docs[("Deployment", "tether")]
        cls.pod = cls.deploy["spec"]["template"]["spec"]
        cls.container = cls.pod["containers"][0]

    def test_manifests_pass_the_kubernetes_schemas(self):
        node, npm = shutil.which("node"), shutil.which("npm")
        if not node or not npm:
            self.skipTest("node/npm not installed: schemas not checked")
        if not (DEPLOY / "node_modules").is_dir():
            try:
                done = run([npm, "ci", "--no-audit", "--no-fund"], cwd=DEPLOY, timeout=300)
            except subprocess.TimeoutExpired:
                self.skipTest("npm ci took more than 300 s (registry unreachable?)")
            if done.returncode != 0:
                self.skipTest(f"npm ci failed (offline?): {done.stderr[-300:]}")
        done = run([node, "validate_k8s.mjs", *sorted(K8S.glob("*.yaml"))], cwd=DEPLOY)
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        self.assertEqual(done.stdout.count("ok "), len(self.docs))

    def test_configmap_config_passes_tether_t(self):
        tether_t(self.config_text)

    def test_deployment_runs_the_configmap_config(self):
        self.assertGreaterEqual(self.deploy["spec"]["replicas"], 2)
        self.assertEqual(self.container["args"], ["-c", "/etc/tether/tether.yaml"])
        mount = self.container["volumeMounts"][0]
        self.assertEqual(mount["mountPath"], "/etc/tether")
        volume = next(v for v in self.pod["volumes"] if v["name"] == mount["name"])
        self.assertEqual(volume["configMap"]["name"], "tether-config")
        secret = self.container["env"][0]["valueFrom"]["secretKeyRef"]
        self.assertIn(secret["key"], self.docs[("Secret", secret["name"])]["stringData"])
        self.assertEqual(self.pod["securityContext"]["runAsUser"], 10001)  # the image's USER

    def test_probes_and_ports_match_the_config(self):
        ports = {p["name"]: p["containerPort"] for p in self.container["ports"]}
        self.assertEqual(ports["http"], port_of(self.config["listen"][0]["address"]))
        self.assertEqual(ports["admin"], port_of(self.config["admin"]["address"]))
        self.assertTrue(self.config["admin"]["address"].startswith("0.0.0.0:"))
        ready = self.container["readinessProbe"]["httpGet"]
        self.assertEqual((ready["path"], ready["port"]), ("/readyz", "admin"))
        live = self.container["livenessProbe"]["httpGet"]
        self.assertEqual((live["path"], live["port"]), ("/healthz", "admin"))

    def test_prestop_and_grace_period_cover_the_drain(self):
        pre = self.container["lifecycle"]["preStop"]["exec"]["command"]
        self.assertEqual(pre[0], "/bin/sleep")
        budget = int(pre[1]) + seconds(self.config["timeouts"]["shutdown"])
        self.assertGreater(self.pod["terminationGracePeriodSeconds"], budget)

    def test_services_and_servicemonitor_select_the_pods(self):
        labels = self.deploy["spec"]["template"]["metadata"]["labels"]
        self.assertEqual(self.deploy["spec"]["selector"]["matchLabels"], labels)
        client = self.docs[("Service", "tether")]["spec"]
        self.assertEqual(client["selector"], labels)
        self.assertEqual(client["ports"][0]["targetPort"], "http")
        admin = self.docs[("Service", "tether-admin")]
        monitor = self.docs[("ServiceMonitor", "tether")]["spec"]
        for k, v in monitor["selector"]["matchLabels"].items():
            self.assertEqual(admin["metadata"]["labels"][k], v)
        self.assertEqual(monitor["endpoints"][0]["port"], admin["spec"]["ports"][0]["name"])
        self.assertEqual(monitor["endpoints"][0]["path"], "/metrics")

    def test_socket_io_statefulset_matches_the_servers(self):
        sts = self.docs[("StatefulSet", "io")]
        headless = self.docs[("Service", sts["spec"]["serviceName"])]["spec"]
        self.assertEqual(headless["clusterIP"], "None")
        port = sts["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
        names = [f"io-{i}" for i in range(sts["spec"]["replicas"])]
        servers = self.config["upstreams"]["io"]["servers"]
        self.assertEqual([(s["name"], s["address"]) for s in servers],
                         [(n, f"{n}.{sts['spec']['serviceName']}:{port}") for n in names])
        io = sts["spec"]["template"]["spec"]["containers"][0]
        drain = " ".join(io["lifecycle"]["preStop"]["exec"]["command"])
        admin = self.docs[("Service", "tether-admin")]["spec"]["ports"][0]["port"]
        self.assertIn(f"http://tether-admin:{admin}/upstreams/io/servers/", drain)
        self.assertIn("/drain", drain)
        env = {e["name"]: e for e in io["env"]}
        self.assertEqual(env["NAME"]["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name")

    def test_redis_is_where_tether_and_the_adapter_look(self):
        svc = self.docs[("Service", "redis")]["spec"]["ports"][0]["port"]
        self.assertEqual(self.config["redis"]["address"], f"redis:{svc}")
        io = self.docs[("StatefulSet", "io")]["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in io["env"]}
        self.assertEqual(env["REDIS_URL"], f"redis://redis:{svc}")


class SystemdExample(unittest.TestCase):
    def setUp(self):
        self.unit = (SYSTEMD / "tether.service").read_text()
        self.config_text = (SYSTEMD / "tether.yaml").read_text()

    def test_unit_passes_systemd_analyze_verify(self):
        if not shutil.which("systemd-analyze"):
            self.skipTest("systemd-analyze not installed")
        with tempfile.TemporaryDirectory(prefix="tether-unit-") as d:
            unit = Path(d) / "tether.service"  # the built binary where the unit expects one
            unit.write_text(self.unit.replace("/usr/local/bin/tether",
                                              harness._binary("TETHER_BIN")))
            done = run(["systemd-analyze", "verify", unit])
        complaints = [l for l in (done.stdout + done.stderr).splitlines() if "tether.service" in l]
        self.assertEqual((done.returncode, complaints), (0, []))

    def test_reload_checks_then_sends_sighup_and_stop_outlasts_shutdown(self):
        lines = dict(re.findall(r"(?m)^(\w+)=(.*)$", self.unit))
        reloads = re.findall(r"(?m)^ExecReload=(.*)$", self.unit)
        self.assertEqual(reloads, ["/usr/local/bin/tether -t -c /etc/tether/tether.yaml",
                                   "/bin/kill -HUP $MAINPID"])
        self.assertEqual(lines["ExecStart"], "/usr/local/bin/tether -c /etc/tether/tether.yaml")
        self.assertEqual(lines["KillSignal"], "SIGTERM")
        self.assertNotEqual(lines.get("User", "root"), "root")
        shutdown = seconds(re.search(r"(?m)^\s+shutdown:\s*(\S+)", self.config_text).group(1))
        self.assertGreater(seconds(lines["TimeoutStopSec"]), shutdown)

    def test_config_passes_tether_t(self):
        tether_t(self.config_text)


if __name__ == "__main__":
    unittest.main()
