#!/usr/bin/env python3
"""CPU budgets for benchmarked processes: one cgroup per process tree with a CFS bandwidth
quota (cgroup v1 `cpu` controller: cpu.cfs_period_us / cpu.cfs_quota_us; cgroup v2: cpu.max),
so that each proxy compare.py starts gets the same share of the machine's CPUs however hungry
the client and the backend beside it are.

    budgets = Budgets(period_us=10000)         # finds the controller or raises CgroupError
    cg = budgets.create("nginx", cpus=0.8)      # 0.8 CPU: quota 8000 us every 10000 us
    proc = subprocess.Popen(cg.wrap(argv))      # joins the cgroup before exec: children inherit
    before = cg.stat(); ...; after = cg.stat()  # nr_periods, nr_throttled, throttled_us
    budgets.close()                             # removes every cgroup it created

wrap() starts the program through `/bin/sh -c 'echo $$ > cgroup.procs && exec "$@"'`: the shell
writes its own PID into the cgroup and then becomes the program (same PID), so everything it
forks later (nginx's workers) is in the cgroup from the start. A cgroup is removed when its
process has stopped (Cgroup.remove, Budgets.close; if a process is still in it, it is moved
back to the parent first). Cgroups are named tether-bench-<our PID>-<name>; empty ones left by
a run that was killed (its PID gone) are removed when the next Budgets is made.

`python3 tools/bench/cpu_budget.py` prints which controller would be used, or why none can
be (exit status 1). Single-threaded use; Python 3.11 standard library only.
"""
from __future__ import annotations

import errno
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

PREFIX = "tether-bench-"
MIN_QUOTA_US = 1000  # the kernel's lower bound for a CFS quota (and period)
MAX_PERIOD_US = 1000000
REMOVE_TIMEOUT = 5.0  # seconds to wait for a stopping process to leave its cgroup


class CgroupError(RuntimeError):
    """No writable cpu controller, or a cgroup file refused a write (the message says which)."""


@dataclass(frozen=True)
class Controller:
    version: int  # 1 or 2
    parent: Path  # where child cgroups are made


def _own_cgroup(version: int, proc_cgroup: str) -> str | None:
    """Our cgroup path in the v1 hierarchy that has `cpu`, or the v2 one, from /proc/self/cgroup."""
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hid, ctrls, path = parts
        if version == 2 and hid == "0" and ctrls == "":
            return path
        if version == 1 and "cpu" in ctrls.split(","):
            return path
    return None


def _writable(d: Path, files: list[str]) -> str | None:
    """None if d and the named files in it may be written, else why not."""
    if not d.is_dir():
        return f"{d} is not a directory"
    if not os.access(d, os.W_OK):
        return f"{d} is not writable (run as root or with a delegated cgroup)"
    for f in files:
        if not (d / f).exists():
            return f"{d / f} does not exist"
    return None


def find_controller(mounts: str | None = None, proc_cgroup: str | None = None) -> Controller:
    """The cpu controller this machine lets us use: v1 when `cpu` is bound to a v1 hierarchy
    (a controller is in at most one), else v2 when a cgroup2 mount lists `cpu` in its
    cgroup.controllers. Raises CgroupError naming every place looked at and why it is not usable."""
    if mounts is None:
        mounts = Path("/proc/mounts").read_text()
    if proc_cgroup is None:
        proc_cgroup = Path("/proc/self/cgroup").read_text()
    reasons: list[str] = []
    v1: list[Path] = []
    v2: list[Path] = []
    for line in mounts.splitlines():
        f = line.split()
        if len(f) < 4:
            continue
        point = Path(f[1].replace("\\040", " "))
        if f[2] == "cgroup" and "cpu" in f[3].split(","):
            v1.append(point)
        elif f[2] == "cgroup2":
            v2.append(point)
    for point in v1:
        own = _own_cgroup(1, proc_cgroup) or "/"
        # our own cgroup first (a container's), else the hierarchy's root
        for parent in dict.fromkeys([point / own.lstrip("/"), point]):
            why = _writable(parent, ["cpu.cfs_quota_us", "cpu.cfs_period_us", "cgroup.procs"])
            if why is None:
                return Controller(1, parent)
            reasons.append(f"cgroup v1 cpu: {why}")
    for point in v2:
        try:
            ctrls = (point / "cgroup.controllers").read_text().split()
        except OSError as e:
            reasons.append(f"cgroup v2 at {point}: {e}")
            continue
        if "cpu" not in ctrls:
            reasons.append(f"cgroup v2 at {point}: no cpu in cgroup.controllers "
                           f"({' '.join(ctrls) or 'empty'})")
            continue
        own = _own_cgroup(2, proc_cgroup) or "/"
        # the mount's root may enable cpu for its children while it holds processes; a
        # non-root cgroup with processes may not (no internal processes), so it comes second
        for parent in dict.fromkeys([point, point / own.lstrip("/")]):
            why = _writable(parent, ["cgroup.subtree_control", "cgroup.procs"])
            if why is None:
                try:
                    if "cpu" not in (parent / "cgroup.subtree_control").read_text().split():
                        (parent / "cgroup.subtree_control").write_text("+cpu\n")
                    return Controller(2, parent)
                except OSError as e:
                    why = f"enabling cpu in {parent / 'cgroup.subtree_control'}: {e}"
            reasons.append(f"cgroup v2: {why}")
    if not v1 and not v2:
        reasons.append("no cgroup or cgroup2 file system is mounted (/proc/mounts)")
    raise CgroupError("no writable cgroup cpu controller: " + "; ".join(reasons))


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value + "\n")
    except OSError as e:
        raise CgroupError(f"writing {value!r} to {path}: {e.strerror or e}") from e


class Cgroup:
    """One child cgroup with a CPU quota of `cpus` CPUs (0.5 = half of one CPU's time per period;
    2 = two CPUs' worth, spread over any CPUs; None = no quota) and a scheduling weight
    (`weight` x the default: v1 cpu.shares 1024 x weight, v2 cpu.weight 100 x weight; None =
    the default), which decides its part of the CPUs while other groups want them too."""

    def __init__(self, ctl: Controller, name: str, cpus: float | None, period_us: int,
                 weight: float | None = None):
        self.ctl = ctl
        self.cpus = cpus
        self.period_us = period_us
        self.quota_us = max(MIN_QUOTA_US, round(cpus * period_us)) if cpus else None
        self.path = ctl.parent / name
        try:
            self.path.mkdir()
        except OSError as e:
            raise CgroupError(f"creating {self.path}: {e.strerror or e}") from e
        try:
            if ctl.version == 1:
                if self.quota_us:
                    _write(self.path / "cpu.cfs_period_us", str(period_us))
                    _write(self.path / "cpu.cfs_quota_us", str(self.quota_us))
                if weight:
                    _write(self.path / "cpu.shares", str(max(2, min(262144, round(1024 * weight)))))
            else:
                if self.quota_us:
                    _write(self.path / "cpu.max", f"{self.quota_us} {period_us}")
                if weight:
                    _write(self.path / "cpu.weight", str(max(1, min(10000, round(100 * weight)))))
        except CgroupError:
            self.remove()
            raise

    @property
    def procs_file(self) -> Path:
        return self.path / "cgroup.procs"

    def wrap(self, argv: list[str]) -> list[str]:
        """argv run so that its process joins this cgroup before it execs (same PID)."""
        return ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self.procs_file), *argv]

    def add(self, pid: int) -> None:
        """Moves a running process (and its threads) in; its later children follow it."""
        _write(self.procs_file, str(pid))

    def pids(self) -> list[int]:
        try:
            return [int(x) for x in self.procs_file.read_text().split()]
        except OSError:
            return []

    def stat(self) -> dict[str, int]:
        """nr_periods, nr_throttled, throttled_us, and usage_us when the controller tells it
        (v2's cpu.stat; v1's cpuacct is another hierarchy)."""
        out: dict[str, int] = {}
        try:
            text = (self.path / "cpu.stat").read_text()
        except OSError:
            return out
        for line in text.splitlines():
            k, _, v = line.partition(" ")
            if not v.strip().isdigit():
                continue
            n = int(v)
            if k in ("nr_periods", "nr_throttled"):
                out[k] = n
            elif k == "throttled_time":  # v1, nanoseconds
                out["throttled_us"] = n // 1000
            elif k == "throttled_usec":
                out["throttled_us"] = n
            elif k == "usage_usec":
                out["usage_us"] = n
        return out

    def remove(self) -> None:
        """Removes the cgroup: waits (bounded) for stopping processes to leave it, moves any
        that do not back to the parent, then rmdir. Idempotent."""
        if not self.path.exists():
            return
        deadline = time.monotonic() + REMOVE_TIMEOUT
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in self.pids():
            try:
                (self.ctl.parent / "cgroup.procs").write_text(f"{pid}\n")
            except OSError:
                pass  # exited meanwhile
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError as e:
                if e.errno != errno.EBUSY:
                    raise CgroupError(f"removing {self.path}: {e.strerror or e}") from e
                time.sleep(0.02)
        raise CgroupError(f"removing {self.path}: still busy (processes {self.pids()})")


class Budgets:
    """The cgroups of one benchmark run; close() removes them all."""

    def __init__(self, period_us: int = 10000, controller: Controller | None = None):
        if not MIN_QUOTA_US <= period_us <= MAX_PERIOD_US:
            raise ValueError(f"period {period_us} us outside {MIN_QUOTA_US}..{MAX_PERIOD_US}")
        self.ctl = controller or find_controller()
        self.period_us = period_us
        self.groups: list[Cgroup] = []
        self._clean_stale()

    def _clean_stale(self) -> None:
        """Empty tether-bench-<pid>-* cgroups whose run (pid) no longer exists."""
        for d in self.ctl.parent.glob(PREFIX + "*"):
            m = re.match(re.escape(PREFIX) + r"(\d+)-", d.name)
            if not m or Path(f"/proc/{m.group(1)}").exists():
                continue
            try:
                if not (d / "cgroup.procs").read_text().split():
                    d.rmdir()
            except OSError:
                pass

    def create(self, name: str, cpus: float | None, weight: float | None = None) -> Cgroup:
        cg = Cgroup(self.ctl, f"{PREFIX}{os.getpid()}-{name}", cpus, self.period_us, weight)
        self.groups.append(cg)
        return cg

    def describe(self) -> str:
        if self.ctl.version == 1:
            return f"cgroup v1 cpu controller under {self.ctl.parent} (cpu.cfs_quota_us / cpu.cfs_period_us)"
        return f"cgroup v2 under {self.ctl.parent} (cpu.max)"

    def close(self) -> list[str]:
        """Removes every cgroup created; returns the errors (none expected)."""
        errors = []
        for cg in self.groups:
            try:
                cg.remove()
            except CgroupError as e:
                errors.append(str(e))
        self.groups.clear()
        return errors


def main() -> int:
    try:
        ctl = find_controller()
    except CgroupError as e:
        print(e, file=sys.stderr)
        return 1
    print(f"cgroup v{ctl.version}: child cgroups under {ctl.parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
