#!/usr/bin/env python3
"""Prints one Markdown table row per libFuzzer log that tools/fuzz/run.sh wrote
(build-fuzz/fuzz_TARGET.log): run time, executions, the final average exec/s
(libFuzzer's exec/s is the average since the start), the range of exec/s over
the last 10 status lines, the final cov:, ft: and corpus (units/size), peak RSS and whether the run ended
on a finding.
    python3 tools/fuzz/summarize.py [build-fuzz/fuzz_TARGET.log ...]
"""
import glob
import re
import sys

STATUS = re.compile(r"^#(\d+)\s+(\w+)\s+cov: (\d+) ft: (\d+) corp: (\d+)/(\S+)"
                    r".*?exec/s: (\d+) rss: (\d+)Mb")


def row(path: str) -> str:
    target = re.sub(r"^.*fuzz_(\w+)\.log$", r"\1", path)
    text = open(path, errors="replace").read()
    lines = [m for m in (STATUS.match(l) for l in text.splitlines()) if m]
    if not lines:
        return f"| {target} | (no status line) |"
    last = lines[-1]
    stats = dict(re.findall(r"^stat::(\w+):\s+(\d+)", text, re.M))
    execs = int(stats.get("number_of_executed_units", last.group(1)))
    average = int(stats.get("average_exec_per_sec", last.group(7)))
    seconds = round(execs / average) if average else 0
    tail = [int(m.group(7)) for m in lines[-10:]]
    finding = "yes: " + m.group(1) if (m := re.search(
        r"(ERROR: libFuzzer: \S+|ERROR: AddressSanitizer: \S+|SUMMARY: \S+: \S+.*|"
        r"runtime error: .*)", text)) else "none"
    return (f"| {target} | {seconds} | {execs:,} | {average:,} | {min(tail):,}-{max(tail):,} | "
            f"{last.group(3)} | {last.group(4)} | {last.group(5)} / {last.group(6)} | "
            f"{stats.get('peak_rss_mb', last.group(8))} | {finding} |")


def main() -> None:
    paths = sys.argv[1:] or sorted(glob.glob("build-fuzz/fuzz_*.log"))
    print("| target | seconds | executions | exec/s (average) | exec/s (last 10 lines) "
          "| cov | ft | corpus (units / size) | peak RSS MB | finding |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for p in paths:
        print(row(p))


if __name__ == "__main__":
    main()
