"""Hostile or broken config files against the real tether binary (src/config/yaml_guard.hpp).

- `tether -t` on the fuzz finding that made yaml-cpp 0.7 grow by tens of GB a minute
  (tools/fuzz/corpus/config_loader/regression-memory-blowup.yaml) exits 1 with
  FILE:LINE:COL: message; so do a "billion laughs" file, 100,000 nested '[' and a file over
  1 MiB (FILE: message). Each child's peak RSS (getrusage of the reaped child) stays far
  below what the blow-up took: a bound on memory, not on time.
- A running tether sent SIGHUP with each of those files logs "reload refused" with the same
  message as -t, keeps serving on the old config, and its RSS grows by less than 64 MiB
  (512 MiB under ASan/TSan, whose allocators hold freed memory).

Processes are stopped by PID; every wait is bounded.
"""

import os
import re
import resource
import signal
import subprocess
import tempfile
import time
import unittest

from harness import HOST, Backend, Tether, _binary, free_port, http_request, tether_config

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BLOWUP = os.path.join(ROOT, "tools/fuzz/corpus/config_loader/regression-memory-blowup.yaml")


def laughs() -> bytes:
    text = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    for i, c in enumerate("bcdefghi"):
        prev = "abcdefghi"[i]
        text += f"{c}: &{c} [" + ", ".join([f"*{prev}"] * 9) + "]\n"
    return text.encode()


# name -> (bytes, a regex of what follows "PATH" in the message)
HOSTILE = {
    "blowup": (None, re.escape(":5:3: invalid YAML: ',' outside [ ] or { }")),
    "laughs": (laughs(), r":\d+:\d+: " + re.escape(
        "YAML with more than 250000 nodes (an alias counts as all the nodes it repeats)")),
    # yaml-cpp marks an unterminated sequence at a column of its own
    "deep": (b"[" * 100_000, r":1:\d+: YAML nested deeper than 64 levels"),
    "big": (b"# " + b"x" * (2 << 20) + b"\n",
            re.escape(": config file larger than 1 MiB (2097155 bytes)")),
}


def sanitized(pid: int) -> bool:
    """Whether the process runs with ASan or TSan, whose allocators keep freed memory
    (ASan's quarantine alone holds up to 256 MiB): the RSS bound is then wider."""
    with open(f"/proc/{pid}/maps") as f:
        return any("libasan" in line or "libtsan" in line for line in f)


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} after {timeout}s")
        time.sleep(0.05)


def hostile_bytes(name: str) -> bytes:
    data = HOSTILE[name][0]
    if data is None:
        with open(BLOWUP, "rb") as f:
            data = f.read()
    return data


class ConfigGuardTest(unittest.TestCase):
    def test_check_refuses_each_hostile_file_quickly_and_in_bounded_memory(self):
        with tempfile.TemporaryDirectory(prefix="tether-guard-") as d:
            for name, (_, expected) in HOSTILE.items():
                with self.subTest(name=name):
                    path = os.path.join(d, name + ".yaml")
                    with open(path, "wb") as f:
                        f.write(hostile_bytes(name))
                    done = subprocess.run([_binary("TETHER_BIN"), "-t", "-c", path],
                                          capture_output=True, timeout=60,
                                          stdin=subprocess.DEVNULL)
                    err = done.stderr.decode(errors="replace")
                    self.assertEqual(done.returncode, 1, err)
                    first = err.splitlines()[0] if err else ""
                    self.assertRegex(first, "^" + re.escape(path) + expected + "$")
        # The largest child so far (only tether -t here): the blow-up took tens of GB.
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
        print(f"\npeak RSS of the tether -t children: {peak_mb} MiB")
        self.assertLess(peak_mb, 1024)

    def test_sighup_with_a_hostile_file_is_refused_and_keeps_serving(self):
        with Backend("s1") as s1:
            port = free_port()
            good = tether_config([("s1", s1.port)], port, workers=1)
            with Tether(good) as t:
                self.assertEqual(http_request(HOST, t.port, "GET", "/").status, 200)
                before = t.rss_kb()
                for n, name in enumerate(HOSTILE, start=1):
                    with open(t.config_path, "wb") as f:
                        f.write(hostile_bytes(name))
                    t.signal(signal.SIGHUP)
                    wait_until(lambda: t.logs().count("reload refused") >= n, 30,
                               what=f"refusal of {name}")
                    self.assertRegex(t.logs(), re.escape(t.config_path) + HOSTILE[name][1])
                    self.assertTrue(t.running())
                    self.assertEqual(http_request(HOST, t.port, "GET", "/").status, 200)
                grown_mb = (t.rss_kb() - before) // 1024
                print(f"\nRSS growth over {len(HOSTILE)} refused reloads: {grown_mb} MiB")
                self.assertLess(grown_mb, 512 if sanitized(t.pid) else 64)


if __name__ == "__main__":
    unittest.main()
