"""The harness's config rewrites (Tether.write_config / reload, through replace_file) as
tether sees them: a reload reads the whole old file or the whole new one.

Tether reads its config when it handles a SIGHUP. Under TSan on a loaded machine that can be
more than 0.3 s after the signal (5 of 108 reloads of test_cross_thread at load 15), when the
test is already writing the next config; open(path, "w") leaves the file empty between its
truncation and the write, and a reload reading it then is refused, so a generation the test
waits for never comes (test_cross_thread failed so under TSan at c8b518f, ctest -j2).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import unittest

from harness import replace_file

# Another process reads the file until told to stop and prints how many reads it made and
# how many were neither text.
READER = r"""
import sys
path, a, b = sys.argv[1], open(sys.argv[2]).read(), open(sys.argv[3]).read()
reads = torn = 0
print("ready", flush=True)
while True:
    with open(path) as f:
        got = f.read()
    reads += 1
    torn += got not in (a, b)
    if reads % 50 == 0 and open(sys.argv[4]).read() == "stop":
        break
print(reads, torn, flush=True)
"""


class ReplaceFile(unittest.TestCase):
    def test_a_reader_in_another_process_sees_only_whole_files(self):
        with tempfile.TemporaryDirectory(prefix="tether-cfg-") as d:
            texts = [f"# config {n}\n" + "upstreams: {}\n" * (300 + n) for n in (0, 1)]
            names = []
            for n, text in enumerate(texts):
                names.append(os.path.join(d, f"text{n}"))
                with open(names[-1], "w") as f:
                    f.write(text)
            path, flag = os.path.join(d, "tether.yaml"), os.path.join(d, "flag")
            replace_file(path, texts[0])
            with open(flag, "w") as f:
                f.write("go")
            reader = subprocess.Popen([sys.executable, "-c", READER, path, *names, flag],
                                      stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                      text=True)
            try:
                self.assertEqual(reader.stdout.readline().strip(), "ready")
                end = time.monotonic() + 2.0
                writes = 0
                while time.monotonic() < end:
                    replace_file(path, texts[writes % 2])
                    writes += 1
                with open(flag, "w") as f:
                    f.write("stop")
                reads, torn = map(int, reader.stdout.readline().split())
            finally:
                reader.kill()
                reader.wait(10)
                reader.stdout.close()
            self.assertGreater(writes, 100)
            self.assertGreater(reads, 100)
            self.assertEqual(torn, 0, f"{torn} of {reads} reads saw a partial file "
                                      f"({writes} writes)")
            self.assertEqual(sorted(os.listdir(d)), ["flag", "tether.yaml", "text0", "text1"])


if __name__ == "__main__":
    unittest.main()
