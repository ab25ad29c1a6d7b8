"""tools/bench/recv_paths.cpp (tether-recv-paths): every one of its eight receive paths echoes on
loopback (a mode that echoed nothing makes the tool exit 1) and the report has a per-round line
and a median line per mode, epoll's ratio 1.000. Skipped where the kernel refuses io_uring (the
tool says so and exits 1). Needs WS_ECHO_BIN (ctest sets it; tether-recv-paths is built beside
it). Short runs, 8 connections: a check that the tool works, not a measurement."""
import os
import re
import subprocess
import unittest

import harness

MODES = ["epoll", "batch", "multishot", "ms-evfd", "epoll+rs", "ms-evfd+rs", "multishot+rs", "epoll+rsf"]


class RecvPathsTest(unittest.TestCase):
    def test_every_mode_echoes_and_is_reported(self):
        tool = os.path.join(os.path.dirname(harness._binary("WS_ECHO_BIN")), "tether-recv-paths")
        r = subprocess.run([tool, "--rounds", "2", "--seconds", "0.3", "--conns", "8"],
                           capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        if r.returncode == 1 and "io_uring not available" in r.stderr:
            self.skipTest(r.stderr.strip())
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        rounds = [line for line in r.stdout.splitlines() if line.startswith("round ")]
        self.assertEqual(len(rounds), 2, r.stdout)
        for line in rounds:
            got = dict(re.findall(r"(\S+) (\d+)(?=\s)", line.split(":", 1)[1]))
            self.assertEqual(sorted(got), sorted(MODES), line)
            self.assertTrue(all(int(v) > 0 for v in got.values()), line)
        self.assertEqual(rounds[1].split()[2], "batch", "the second round starts with the next mode")
        medians = {}
        for m in re.finditer(r"^(\S+)\s+median\s+(\d+) ns per message, ([\d.]+) x epoll$", r.stdout,
                             re.MULTILINE):
            medians[m.group(1)] = (int(m.group(2)), float(m.group(3)))
        self.assertEqual(sorted(medians), sorted(MODES), r.stdout)
        self.assertEqual(medians["epoll"][1], 1.0)
        for mode, (ns, ratio) in medians.items():
            self.assertGreater(ns, 0, mode)
            self.assertAlmostEqual(ratio, ns / medians["epoll"][0], delta=0.002, msg=mode)


if __name__ == "__main__":
    unittest.main()
