"""tools/bench/cpu_budget.py, the cgroup helper behind compare.py --cpu-budget: a real cgroup
with a small CFS quota holds a busy process tree (a shell that forks a second busy process
after joining) to the quota, cpu.stat counts the throttled periods, and the cgroup is gone
afterwards, also when the process is still running at removal. And compare.py's proxies under
--cpu-budget: nginx's master and both its workers, forked after the master joined, are in
the cgroup, with the quota of 2 workers, and the cgroup is gone once nginx is stopped.

Needs a writable cgroup cpu controller (v1 cpu, or v2 with cpu in cgroup.controllers; root,
or a delegated subtree); without one the budget tests are skipped and say why. The bound
checked is the kernel's accounting (CPU time used <= quota x periods elapsed, plus slack), not
a duration; every child is ours, stopped by PID, and every wait is bounded.
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools" / "bench"))
import compare  # noqa: E402
import cpu_budget  # noqa: E402
from harness import _binary  # noqa: E402

PERIOD_US = 10000
CPUS = 0.1  # 1 ms every 10 ms, far below what one busy process takes unthrottled
RUN_S = 1.0
# sh loops, the second forked after the shell joined the cgroup (so it inherits it)
BUSY = 'while :; do :; done & while :; do :; done'


def controller_or_skip() -> cpu_budget.Controller:
    try:
        return cpu_budget.find_controller()
    except (cpu_budget.CgroupError, OSError) as e:
        raise unittest.SkipTest(f"no writable cgroup cpu controller on this machine: {e}")


def tree_cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(f[11]) + int(f[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


class BudgetTest(unittest.TestCase):
    def setUp(self):
        self.ctl = controller_or_skip()
        self.budgets = cpu_budget.Budgets(PERIOD_US, controller=self.ctl)
        self.procs: list[subprocess.Popen] = []

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)  # its own process group: the shell and its loop
                p.wait(timeout=10)
        self.assertEqual(self.budgets.close(), [])

    def start(self, cg: cpu_budget.Cgroup) -> subprocess.Popen:
        p = subprocess.Popen(cg.wrap(["/bin/sh", "-c", BUSY]), start_new_session=True)
        self.procs.append(p)
        deadline = time.monotonic() + 10
        while len(cg.pids()) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        return p

    def test_busy_tree_is_held_to_its_quota_and_the_cgroup_removed(self):
        cg = self.budgets.create("test-busy", CPUS)
        self.assertEqual(cg.quota_us, 1000)
        if self.ctl.version == 1:
            self.assertEqual((cg.path / "cpu.cfs_quota_us").read_text().strip(), "1000")
            self.assertEqual((cg.path / "cpu.cfs_period_us").read_text().strip(), str(PERIOD_US))
        else:
            self.assertEqual((cg.path / "cpu.max").read_text().split(), ["1000", str(PERIOD_US)])
        p = self.start(cg)
        pids = cg.pids()
        self.assertIn(p.pid, pids, "wrap(): the program runs in the cgroup under its own PID")
        self.assertEqual(len(pids), 2, f"the forked loop inherits the cgroup: {pids}")
        before, cpu0 = cg.stat(), tree_cpu_seconds(pids)
        time.sleep(RUN_S)
        after, cpu1 = cg.stat(), tree_cpu_seconds(pids)
        periods = after["nr_periods"] - before["nr_periods"]
        throttled = after["nr_throttled"] - before["nr_throttled"]
        self.assertGreater(periods, 0)
        # two busy loops want 20x the quota: every period they run in, they use it up
        self.assertGreater(throttled, periods // 2, (before, after))
        self.assertGreater(after["throttled_us"], before["throttled_us"])
        used = cpu1 - cpu0
        allowed = (periods + 2) * cg.quota_us / 1e6  # the quota of every period, plus the edges
        tick = 2 / os.sysconf("SC_CLK_TCK")  # /proc/PID/stat's resolution, for two processes
        self.assertLessEqual(used, allowed + tick,
                             f"{used:.3f} s of CPU in {periods} periods of {cg.quota_us} us")
        if "usage_us" in after:  # v2 tells the group's own usage
            self.assertLessEqual((after["usage_us"] - before["usage_us"]) / 1e6, allowed + 0.002)
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=10)
        cg.remove()
        self.assertFalse(cg.path.exists(), "the cgroup is removed")

    def test_remove_moves_a_live_process_out_first(self):
        cg = self.budgets.create("test-live", CPUS)
        p = self.start(cg)
        t0 = time.monotonic()
        cg.remove()  # waits REMOVE_TIMEOUT for the processes to leave, then moves them out
        self.assertFalse(cg.path.exists())
        self.assertLess(time.monotonic() - t0, cpu_budget.REMOVE_TIMEOUT + 5)
        self.assertIsNone(p.poll(), "the process itself is left alone")
        own = Path(f"/proc/{p.pid}/cgroup").read_text()
        self.assertNotIn(cg.path.name, own)

    def test_close_removes_every_cgroup_and_stale_ones_are_cleaned(self):
        groups = [self.budgets.create(f"test-close{i}", 0.5) for i in range(3)]
        self.assertTrue(all(g.path.exists() for g in groups))
        self.assertEqual(self.budgets.close(), [])
        self.assertFalse(any(g.path.exists() for g in groups))
        # a run killed before its close(): an empty cgroup named after a PID that is gone
        dead = subprocess.Popen(["true"])
        dead.wait(timeout=10)
        stale = self.ctl.parent / f"{cpu_budget.PREFIX}{dead.pid}-stale"
        stale.mkdir()
        try:
            cpu_budget.Budgets(PERIOD_US, controller=self.ctl)
            self.assertFalse(stale.exists(), "a stale empty cgroup of a dead run is removed")
        finally:
            if stale.exists():
                stale.rmdir()


class CompareProxyTest(unittest.TestCase):
    """compare.start_proxy under a budget: the whole process tree in the proxy's cgroup."""

    def test_nginx_master_and_workers_share_the_budget(self):
        ctl = controller_or_skip()
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        if not os.path.exists(nginx):
            if os.environ.get("CI") == "true":
                self.fail("nginx is not installed (tools/packages.txt: nginx-light)")
            self.skipTest("nginx is not installed")
        tmp = Path(tempfile.mkdtemp(prefix="tether-test-budget-"))
        tmp.chmod(0o755)  # nginx's workers run as an unprivileged user when we are root
        args = argparse.Namespace(backend=_binary("DEMO_BACKEND_BIN"), nginx=nginx, workers=2,
                                  cpu_budget=0.25, cpu_weight=1.0)
        budgets = cpu_budget.Budgets(PERIOD_US, controller=ctl)
        s = compare.Setup(args, tmp, compare.raise_nofile(), budgets=budgets)
        try:
            s.backend_port = compare.start_backend(s)
            proc, port = compare.start_proxy(s, "nginx")
            cg = compare.CGROUPS[proc.pid]
            self.assertEqual(cg.quota_us, 5000, "0.25 CPU per worker x 2 workers, of 10 ms")
            tree = compare.process_tree(proc.pid)
            self.assertEqual(len(tree), 3, f"master and 2 workers: {tree}")
            self.assertEqual(sorted(cg.pids()), sorted(tree))
            compare.wait_http_ready(port, proc)  # it serves through the budget
            proc.stop()
            self.assertFalse(cg.path.exists(), "stop() removes the proxy's cgroup")
            self.assertNotIn(proc.pid, compare.CGROUPS)
        finally:
            compare.stop_all()
            self.assertEqual(budgets.close(), [])
            shutil.rmtree(tmp, ignore_errors=True)


class FindControllerTest(unittest.TestCase):
    """The choice of controller from /proc/mounts and /proc/self/cgroup (read, not written)."""

    def test_no_cgroup_file_system_is_a_clear_error(self):
        mounts = "proc /proc proc rw 0 0\ntmpfs /tmp tmpfs rw 0 0\n"
        with self.assertRaisesRegex(cpu_budget.CgroupError, "no cgroup or cgroup2 file system"):
            cpu_budget.find_controller(mounts, "0::/\n")

    def test_unwritable_or_missing_controllers_are_named(self):
        with tempfile.TemporaryDirectory() as d:
            v2 = Path(d) / "v2"
            v2.mkdir()
            (v2 / "cgroup.controllers").write_text("memory io\n")
            mounts = f"cgroup {d}/missing cgroup rw,cpu,cpuacct 0 0\ncgroup2 {v2} cgroup2 rw 0 0\n"
            with self.assertRaises(cpu_budget.CgroupError) as cm:
                cpu_budget.find_controller(mounts, "1:cpu,cpuacct:/\n0::/\n")
        msg = str(cm.exception)
        self.assertIn(f"{d}/missing is not a directory", msg)
        self.assertIn("no cpu in cgroup.controllers (memory io)", msg)

    def test_this_machine(self):
        ctl = controller_or_skip()
        self.assertIn(ctl.version, (1, 2))
        self.assertTrue(os.access(ctl.parent, os.W_OK))


if __name__ == "__main__":
    unittest.main()
