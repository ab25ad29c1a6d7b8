"""compare.py's parts, 5 of 5: what every benchmark script's run shares: the program
options (--tether, --nginx, ...) and the --cpu-budget ones with their checks and cgroups,
RLIMIT_NOFILE raised, the report header's facts, notes from the processes' logs, and the end
of a run (report printed and written, temporary directory removed, every started process
stopped however the script ends).

Imported by compare.py (which re-exports it) and through it by tls_compare.py and the other
scripts. Single-threaded, standard library only."""
from __future__ import annotations

import argparse
import datetime
import re
import resource
import shlex
import shutil
import sys
from pathlib import Path

import cpu_budget
from compare_procs import (BUILD, DEFAULT_PERIOD_US, DEFAULT_WEIGHT, git_commit, load_average, log,
                           machine_info, stop_all, tool_version)
from compare_setup import Setup

def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by every child
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def tool_defaults() -> dict[str, str]:
    """The programs the benchmark scripts run, by option name, and where they are by default."""
    return {"tether": str(BUILD / "tether"),
            "backend": str(BUILD / "tools" / "tether-demo-backend"),
            "ws-bench": str(BUILD / "tools" / "bench" / "tether-ws-bench"),
            "ws-backend": str(BUILD / "tools" / "bench" / "tether-ws-echo"),
            "nginx": shutil.which("nginx") or "/usr/sbin/nginx",
            "haproxy": shutil.which("haproxy") or "/usr/sbin/haproxy",
            "wrk": shutil.which("wrk") or "wrk"}


def add_tool_args(p: argparse.ArgumentParser, *names: str) -> None:
    """--tether, --backend, --ws-bench, --ws-backend, --nginx, --haproxy, --wrk (those named),
    with defaults."""
    defaults = tool_defaults()
    for name in names:
        p.add_argument(f"--{name}", default=defaults[name])


def check_tool_args(p: argparse.ArgumentParser, a: argparse.Namespace, *names: str) -> None:
    """Exits through p.error when one of the named programs is not there."""
    for name in names:
        path = getattr(a, name.replace("-", "_"))
        if not (Path(path).is_file() or shutil.which(path)):
            p.error(f"--{name}: {path} not found (build it first)")


def add_budget_args(p: argparse.ArgumentParser) -> None:
    """--cpu-budget, --cpu-period-us, --cpu-weight: the proxy-bound mode's options (compare.py
    and the scripts that reuse its setup); check them with check_budget_args."""
    p.add_argument("--cpu-budget", type=float, metavar="CPUS",
                   help="proxy-bound mode: each proxy in a cgroup with a CFS quota of CPUS per "
                        "worker (0.4 = 40%% of one CPU; 2 workers get 0.8); direct unbudgeted")
    p.add_argument("--cpu-period-us", type=int, default=DEFAULT_PERIOD_US,
                   help="CFS period of --cpu-budget's quota in microseconds (1000..1000000)")
    p.add_argument("--cpu-weight", type=float, default=DEFAULT_WEIGHT,
                   help="--cpu-budget: scheduling weight, x the default, of each proxy's cgroup "
                        "and of one cgroup (no quota) holding the clients and backends, so that "
                        "other work on the machine takes neither the proxies' budget nor the load")


def check_budget_args(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    """Exits through p.error when the options of add_budget_args make no quota."""
    if a.cpu_budget is None:
        return
    if not a.cpu_budget > 0 or not a.cpu_weight > 0:
        p.error("--cpu-budget and --cpu-weight must be > 0")
    if not 1000 <= a.cpu_period_us <= 1000000:
        p.error("--cpu-period-us must be within 1000..1000000")
    if a.cpu_budget * a.cpu_period_us < cpu_budget.MIN_QUOTA_US:
        p.error(f"--cpu-budget {a.cpu_budget:g} x --cpu-period-us {a.cpu_period_us} is below "
                f"the kernel's smallest quota, {cpu_budget.MIN_QUOTA_US} us")


def open_budgets(s: Setup, prog: str) -> None:
    """--cpu-budget: s.budgets and s.load_cgroup (no quota: the clients and backends), or the
    reason on stderr and exit status 2 when the machine has no writable cgroup cpu controller.
    Without --cpu-budget nothing. The caller closes s.budgets (every cgroup) at the end."""
    a = s.args
    if a.cpu_budget is None:
        return
    try:
        s.budgets = cpu_budget.Budgets(a.cpu_period_us)
        s.load_cgroup = s.budgets.create("load", None, a.cpu_weight)
    except cpu_budget.CgroupError as e:
        if s.budgets is not None:
            s.budgets.close()
            s.budgets = None
        print(f"{prog}: --cpu-budget needs a writable cgroup cpu controller: {e}", file=sys.stderr)
        raise SystemExit(2) from e
    log(f"--cpu-budget {a.cpu_budget:g} CPU per worker, period {a.cpu_period_us} us: "
        + s.budgets.describe())


# Log lines that say nothing about the run: start/stop chatter, and nginx's warning that
# worker_connections 200000 exceeds the descriptor limit (the configuration asks for it).
# HAProxy's notices (version, stopping) likewise.
BENIGN = re.compile(r"\[info\]|\[notice\]|worker_connections exceed open file resource limit",
                    re.I)
LOG_PREFIX = re.compile(r"^(\S+Z |\d{4}/\d\d/\d\d \d\d:\d\d:\d\d |nginx: )?(\[\w+\] *)?"
                        r"(\d+#\d+: |\(\d+\) : )?")


def check_logs(s: Setup) -> list[str]:
    """Lines in the proxies' and the backend's stderr / error logs worth a look, by source."""
    seen: dict[str, dict[str, int]] = {}  # process kind -> message -> count
    for f in sorted(s.tmp.rglob("*")):
        if not f.is_file() or not (f.suffix == ".stderr" or f.name == "error.log"):
            continue
        if f.name.startswith("ws-idle-"):
            continue  # logged as it came
        kind = f.relative_to(s.tmp).parts[0].split("-")[0].split(".")[0]
        for line in f.read_text(errors="replace").splitlines():
            if line.strip() and not BENIGN.search(line):
                msg = LOG_PREFIX.sub("", line.strip(), count=1)
                msg = re.sub(r"^\*\d+ ", "", msg).split(", client: ")[0]  # nginx connection id
                seen.setdefault(kind, {}).setdefault(msg, 0)
                seen[kind][msg] += 1
    notes = []
    for kind, msgs in seen.items():
        shown = "; ".join(f"{n} x `{m}`" for m, n in list(msgs.items())[:5])
        more = f" (and {len(msgs) - 5} other messages)" if len(msgs) > 5 else ""
        notes.append(f"{kind} logged: {shown}{more}")
    return notes


# ------------------------------------------------------------------------------ a run's frame
# Shared by compare.py and tls_compare.py (and the other scripts where they fit).
def now_text() -> str:
    return datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")


def run_info(script: str, a: argparse.Namespace) -> dict:
    """The machine, the command line, the commit, the load and the versions of tether, nginx
    and wrk, for a report's header (load_end is added by finish())."""
    return machine_info() | {
        "command": f"python3 tools/bench/{script} " + " ".join(shlex.quote(x) for x in sys.argv[1:]),
        "commit": git_commit(), "load_start": load_average(),
        "tether": tool_version([a.tether, "--version"]), "nginx": tool_version([a.nginx, "-v"]),
        "wrk": tool_version([a.wrk, "-v"]).split(" [")[0]}


def exited_notes(s: Setup, names) -> list[str]:
    """A note for each of the named proxies that is no longer running."""
    return [f"{name} exited during the run with code {s.procs[name].p.returncode}"
            for name in names if not s.procs[name].alive()]


def finish(s: Setup, info: dict, notes: list[str], make_report, write) -> None:
    """After the processes are stopped: notes from their logs, the report printed (and written
    to --out with write(path, text, workers)), the temporary directory removed unless --keep."""
    a = s.args
    notes += check_logs(s)
    info["load_end"] = load_average()
    info["notes"] = notes
    text = make_report()
    print(text)
    if a.out:
        write(Path(a.out), text, a.workers)
        log(f"wrote {a.out}")
    if a.keep:
        log(f"kept {s.tmp}")
    else:
        shutil.rmtree(s.tmp, ignore_errors=True)


def run_main(main) -> None:
    """Runs main() as the script's body: every process it started is stopped however it ends."""
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        stop_all()
        sys.exit(130)
    except BaseException:
        stop_all()
        raise
