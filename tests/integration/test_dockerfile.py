"""The Dockerfile, checked as far as a machine without a container engine allows.

- Its package lists are tools/packages.txt's (sections `build` and `runtime` through
  tools/packages.sh), the list the README's commands install: no package is named in the
  Dockerfile itself, and the sections together are exactly what tools/dev.sh installs.
- Every package named there is a real Debian package (dev.sh installed it on this machine).
- The `runtime` section covers every shared library the built binaries link (ldd + dpkg),
  beyond what bookworm-slim ships.
- The build stage's CMake configuration works and knows the targets it builds.
- The image's contract: bookworm stages, a non-root USER, tether as PID 1 (exec-form
  ENTRYPOINT), the config at /etc/tether/tether.yaml, which passes `tether -t`, with the
  HEALTHCHECK on its admin port's /healthz and the ports EXPOSEd.
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

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
PACKAGES = ROOT / "tools" / "packages.txt"
# Shipped by debian:bookworm-slim (apt itself needs them).
SLIM_BASE = {"libc6", "libgcc-s1", "libstdc++6", "zlib1g", "libzstd1", "libcrypt1"}


def section(*names: str) -> list[str]:
    out = subprocess.run(["sh", str(ROOT / "tools" / "packages.sh"), *names],
                         capture_output=True, text=True, check=True, timeout=30)
    return out.stdout.split()


def dev_sh_list() -> list[str]:
    """What tools/dev.sh's install_packages reads: every line but blanks and comments."""
    return [l.strip() for l in PACKAGES.read_text().splitlines()
            if l.strip() and not l.startswith("#")]


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(l for l in DOCKERFILE.read_text().splitlines()
                                          if not l.lstrip().startswith("#")))
    return [(l.split(None, 1)[0].upper(), l.split(None, 1)[1].strip())
            for l in text.splitlines() if l.strip()]


def stages() -> list[list[tuple[str, str]]]:
    out = []
    for ins in instructions():
        if ins[0] == "FROM":
            out.append([])
        out[-1].append(ins)
    return out


class Dockerfile(unittest.TestCase):
    def test_two_bookworm_stages_runtime_slim(self):
        froms = [s[0][1] for s in stages()]
        self.assertEqual(len(froms), 2, froms)
        self.assertRegex(froms[0], r"^debian:bookworm AS build$")
        self.assertEqual(froms[1], "debian:bookworm-slim")

    def test_packages_come_only_from_packages_txt(self):
        for stage, want in zip(stages(), ("build", "runtime")):
            runs = " ".join(a for i, a in stage if i == "RUN")
            installs = re.findall(r"apt-get install ((?:-\S+\s+)*)(.*?)(?:&&|$)", runs)
            self.assertEqual(len(installs), 1, runs)
            self.assertRegex(installs[0][1].strip(),
                             r"^\$\(sh \S*packages\.sh " + want + r"\)$",
                             "packages must come from tools/packages.sh " + want)

    def test_sections_are_exactly_what_dev_sh_installs(self):
        self.assertEqual(sorted(section()), sorted(dev_sh_list()))
        self.assertEqual(sorted(section("runtime", "build", "test")), sorted(dev_sh_list()),
                         "a package outside the runtime/build/test sections")
        self.assertTrue(section("build") and section("runtime"))

    def test_every_package_is_a_real_debian_package(self):
        if not shutil.which("dpkg-query"):
            self.skipTest("no dpkg")
        for pkg in dev_sh_list():
            with self.subTest(pkg):
                out = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg],
                                     capture_output=True, text=True, timeout=30)
                self.assertIn("install ok installed", out.stdout,
                              f"{pkg}: not installed by tools/dev.sh (a typo?)")

    def test_runtime_section_covers_the_linked_libraries(self):
        if not shutil.which("dpkg"):
            self.skipTest("no dpkg")
        binaries = [harness._binary("TETHER_BIN"),
                    os.path.join(os.path.dirname(harness._binary("DEMO_BACKEND_BIN")),
                                 "tether-from-nginx")]
        runtime = set(section("runtime")) | SLIM_BASE
        for binary in binaries:
            ldd = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True,
                                 timeout=30).stdout
            if re.search(r"lib(a|t|ub)san\.so", ldd):  # tools/dev.sh test --asan / --tsan
                self.skipTest("a sanitizer build, not what the image ships")
            for lib in re.findall(r"=> (/\S+)", ldd):
                with self.subTest(binary=os.path.basename(binary), lib=lib):
                    pkg = owner(lib)
                    self.assertIsNotNone(pkg, f"no Debian package owns {lib}")
                    self.assertIn(pkg, runtime, f"{lib} ({pkg}) is not in the runtime section "
                                                "of tools/packages.txt")

    def test_build_stage_configures_and_knows_its_targets(self):
        build = " ".join(a for i, a in stages()[0] if i == "RUN")
        configure = re.search(r"(cmake -S \. -B build [^&]*?)\s*&&", build).group(1)
        targets = re.search(r"--target ((?:[\w-]+ ?)+)", build).group(1).split()
        with tempfile.TemporaryDirectory(prefix="tether-docker-build-") as d:
            args = configure.split()
            args[args.index("-B") + 1] = d
            done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
            self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
            known = subprocess.run(["cmake", "--build", d, "--target", "help"],
                                   capture_output=True, text=True, timeout=60).stdout
        for target in targets:
            self.assertRegex(known, rf"\.\.\. {re.escape(target)}\b", f"no target {target}")

    def test_image_contract(self):
        final = dict((i, a) for i, a in stages()[1])  # last of each instruction
        self.assertNotIn(final.get("USER", "root"), ("root", "0"))
        entry = json.loads(final["ENTRYPOINT"])  # exec form: tether is PID 1, gets signals
        self.assertEqual(entry, ["/usr/local/bin/tether"])
        self.assertEqual(json.loads(final["CMD"]), ["-c", "/etc/tether/tether.yaml"])
        copies = [a for i, a in stages()[1] if i == "COPY" and not a.startswith("--from")]
        config = [a.split()[0] for a in copies if a.endswith("/etc/tether/tether.yaml")]
        self.assertEqual(len(config), 1, copies)
        text = (ROOT / config[0]).read_text()
        code, out, err = harness.tether_check(text)
        self.assertEqual(code, 0, out + err)
        admin_port = re.search(r"(?m)^admin:\n\s+address:\s*\S+:(\d+)", text).group(1)
        listen_port = re.search(r"(?m)^\s+- address:\s*\S+:(\d+)", text).group(1)
        health = final["HEALTHCHECK"]
        self.assertIn(f"http://127.0.0.1:{admin_port}/healthz", health)
        self.assertEqual(set(final["EXPOSE"].split()), {listen_port, admin_port})

    def test_copy_sources_exist(self):
        for i, a in instructions():
            if i == "COPY" and not a.startswith("--from"):
                for src in a.split()[:-1]:
                    if src != ".":
                        self.assertTrue((ROOT / src).exists(), f"COPY {src}: no such file")


def owner(path: str) -> str | None:
    """The Debian package owning `path` (merged /usr: try the path and its other spelling)."""
    real = os.path.realpath(path)
    candidates = {path, real}
    for p in list(candidates):
        if p.startswith("/usr/lib/"):
            candidates.add(p[4:])
        elif p.startswith("/lib/"):
            candidates.add("/usr" + p)
    for p in candidates:
        out = subprocess.run(["dpkg", "-S", p], capture_output=True, text=True, timeout=30)
        if out.returncode == 0:
            return out.stdout.split(":", 1)[0].strip()
    return None


if __name__ == "__main__":
    unittest.main()
