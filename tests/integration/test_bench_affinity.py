"""tools/bench/affinity_overhead.py, issue 9's benchmark of `affinity: sid / cookie / ip_hash` vs
`none`, run for real on a small scale (one round of one second per mode): every mode's table
row is there with requests and CPU counted and no error answer, and --syscalls counts each
mode's syscalls per request (where perf may); and its proxy-bound mode,
--cpu-budget, the way compare.py has it: each tether in a cgroup of its own with the quota of
its workers, the backend (and wrk) in the load cgroup without one, the proxy's CPU time held
to the quota by the kernel's accounting over a wrk run (not a duration), the throttled
periods reported, and no cgroup left once the script has ended.

The budget tests need a writable cgroup cpu controller (tools/bench/cpu_budget.py) and are
skipped without one, saying why; wrk is a Debian package (tools/packages.txt), required in CI.
Every process is ours and stopped by PID; every wait is bounded.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "tools" / "bench"
sys.path.insert(0, str(BENCH))
import affinity_overhead  # noqa: E402
import compare  # noqa: E402
import cpu_budget  # noqa: E402
from harness import _binary  # noqa: E402
from test_cpu_budget import controller_or_skip  # noqa: E402

SCRIPT = BENCH / "affinity_overhead.py"
ROW = re.compile(r"\| (\S+) \| ([\d,]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| "
                 r"([\d.]+) \|(?: (\d+) \|)?$")


def wrk_or_skip(test: unittest.TestCase) -> None:
    if shutil.which("wrk"):
        return
    if os.environ.get("CI") == "true":
        test.fail("wrk is not installed (tools/packages.txt: wrk)")
    test.skipTest("wrk is not installed")


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--tether", _binary("TETHER_BIN"),
                           "--backend", _binary("DEMO_BACKEND_BIN"), "--rounds", "1",
                           "--duration", "1", "--warmup", "0", *args],
                          capture_output=True, text=True, timeout=120)


def rows(out: str) -> dict[str, re.Match]:
    return {m.group(1): m for m in map(ROW.match, out.splitlines()) if m}


class AffinityScriptTest(unittest.TestCase):
    def test_every_mode_is_measured(self):
        wrk_or_skip(self)
        r = run_script("--modes", "sid,cookie,ip_hash,none-sio")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("NON-2xx", r.stderr, "every answer was a 2xx")
        table = rows(r.stdout)
        self.assertEqual(list(table), ["none", "sid", "cookie", "ip_hash", "none-sio"], r.stdout)
        for mode, m in table.items():
            with self.subTest(mode=mode):
                self.assertGreater(int(m.group(2).replace(",", "")), 0, "requests/s")
                self.assertGreater(float(m.group(5)), 0, "proxy CPU us per request")
                self.assertGreater(float(m.group(7)), 0, "proxy CPU %")
                self.assertIsNone(m.group(8), "no throttled column without a budget")
        self.assertEqual(table["none"].group(3), "1.000")
        self.assertEqual(table["none"].group(4), "1.000")

    def test_syscalls_per_request_of_each_mode(self):
        wrk_or_skip(self)
        probe = subprocess.run(["perf", "stat", "-e", "raw_syscalls:sys_enter", "true"],
                               capture_output=True, text=True, timeout=30) \
            if shutil.which("perf") else None
        if probe is None or probe.returncode != 0:
            self.skipTest("perf stat cannot count syscalls here (not installed, or not allowed)")
        r = run_script("--syscalls", "--modes", "sid")
        self.assertEqual(r.returncode, 0, r.stderr)
        table = {m.group(1): m for m in re.finditer(
            r"^\| (\S+) \| ([\d.]+) \| ([\d.]+) \| (.*) \|$", r.stdout, re.M)}
        self.assertEqual(list(table), ["none", "sid"], r.stdout)
        for mode, m in table.items():
            # a keep-alive request is at least a read from the client and a write to the
            # backend, and their answers
            self.assertGreater(float(m.group(2)), 1.0, f"{mode}: {m.group(0)}")
            self.assertRegex(m.group(4), r"^[a-z_0-9]+ [\d.]+", f"{mode}: the most frequent named")

    def test_callgrind_with_a_budget_is_refused(self):
        r = run_script("--callgrind", "--cpu-budget", "0.2")
        self.assertEqual(r.returncode, 2)
        self.assertIn("not with --cpu-budget", r.stderr)


class AffinityBudgetTest(unittest.TestCase):
    def test_each_tether_in_its_own_cgroup_held_to_its_quota(self):
        ctl = controller_or_skip()
        wrk_or_skip(self)
        tmp = Path(tempfile.mkdtemp(prefix="tether-test-affinity-budget-"))
        args = argparse.Namespace(tether=_binary("TETHER_BIN"), backend=_binary("DEMO_BACKEND_BIN"),
                                  workers=2, cpu_budget=0.1, cpu_weight=1.0, cpu_period_us=10000)
        s = compare.Setup(args, tmp, compare.raise_nofile())
        compare.open_budgets(s, "test")
        self.assertEqual(s.budgets.ctl, ctl)
        groups = []
        try:
            bport = compare.start_backend(s)
            backend = next(p for p in compare.LIVE if p.name == "backend")
            self.assertEqual(s.load_cgroup.pids(), [backend.pid], "the backend is in the load cgroup")
            self.assertIsNone(s.load_cgroup.quota_us, "the load has no quota")
            targets = affinity_overhead.start_targets(s, ["none", "sid"], bport, 0)
            for mode, (proc, url, _) in targets.items():
                cg = compare.CGROUPS[proc.pid]
                groups.append(cg)
                self.assertEqual(cg.quota_us, 2000, "0.1 CPU per worker x 2 workers, of 10 ms")
                self.assertEqual(cg.pids(), [proc.pid], f"{mode}: tether alone in its cgroup")
            proc, url, extra = targets["sid"]
            self.assertIn("sid=bench", url)
            cg = compare.CGROUPS[proc.pid]
            before = cg.stat()
            r = affinity_overhead.run(s, url, extra, proc.pid, 1, 16)
            after = cg.stat()
            self.assertGreater(r["requests"], 0)
            self.assertFalse(r["bad"], "every answer was a 2xx")
            periods = after["nr_periods"] - before["nr_periods"]
            throttled = after["nr_throttled"] - before["nr_throttled"]
            self.assertGreater(periods, 0)
            self.assertEqual(r["throttled"], throttled, "run() reports the cgroup's throttling")
            used = r["cpu_us"] * r["requests"] / 1e6
            allowed = (periods + 2) * cg.quota_us / 1e6  # every period's quota, plus the edges
            tick = 1 / os.sysconf("SC_CLK_TCK")  # /proc/PID/stat's resolution
            self.assertLessEqual(used, allowed + tick,
                                 f"{used:.3f} s of CPU in {periods} periods of {cg.quota_us} us")
        finally:
            compare.stop_all()
            self.assertEqual(s.budgets.close(), [])
            shutil.rmtree(tmp, ignore_errors=True)
        self.assertTrue(groups)
        self.assertFalse(any(g.path.exists() for g in groups), "the tethers' cgroups are removed")
        self.assertFalse(s.load_cgroup.path.exists(), "the load cgroup is removed")

    def test_script_reports_throttling_and_leaves_no_cgroup(self):
        ctl = controller_or_skip()
        wrk_or_skip(self)
        proc = subprocess.Popen([sys.executable, str(SCRIPT), "--tether", _binary("TETHER_BIN"),
                                 "--backend", _binary("DEMO_BACKEND_BIN"), "--rounds", "1",
                                 "--duration", "1", "--warmup", "0", "--modes", "cookie",
                                 "--cpu-budget", "0.2"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            out, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()  # ours, by PID
            proc.communicate(timeout=10)
            raise
        self.assertEqual(proc.returncode, 0, err)
        self.assertIn("each tether held to 0.2 CPU per worker", out)
        self.assertIn("periods throttled %", out)
        table = rows(out)
        self.assertEqual(list(table), ["none", "cookie"], out)
        for mode, m in table.items():
            self.assertIsNotNone(m.group(8), f"{mode}: throttled periods reported")
        left = list(ctl.parent.glob(f"{cpu_budget.PREFIX}{proc.pid}-*"))
        self.assertEqual(left, [], "every cgroup of the run is removed")


if __name__ == "__main__":
    unittest.main()
