"""compare.py's parts, 4 of 5: the Markdown report: medians per metric and target, ratios
of tether to the others, the scaling table, the --cpu-budget notes, and writing the report's
block into --out (docs/benchmarks.md) while keeping the rest of the file.

Imported by compare.py (which re-exports it). Pure functions of the results, plus the file
write; standard library only."""
from __future__ import annotations

import re
import statistics
from pathlib import Path

from compare_procs import (BIG_BYTES, BIG_CONNS, FD_MARGIN, PROXIES, SCENARIOS, TARGETS, WRK_CONNS,
                           WS_CONNS, WS_SIZE)
from compare_setup import Setup, haproxy_maxconn
from compare_clients import idle_conns

# ------------------------------------------------------------------------------ report
# (scenario key, metric key, label, which way is better: "hi", "lo" or None = no ranking)
METRICS = [
    ("a", "rps", "requests/s (higher is better)", "hi"),
    ("a", "p50_ms", "p50 latency ms", "lo"),
    ("a", "p99_ms", "p99 latency ms", "lo"),
    ("a", "cpu_pct", "proxy CPU % of one core", None),
    ("a", "cpu_us_per_op", "proxy CPU us per request (lower is better)", "lo"),
    ("a", "throttled_pct", "periods throttled % (budget: quota ran out)", None),
    ("a", "throttled", "periods throttled (sum of rounds)", None),
    ("a", "errors", "errors (sum of rounds)", None),
    ("d", "rps", "connections (= requests)/s (higher is better)", "hi"),
    ("d", "p50_ms", "p50 latency ms", "lo"),
    ("d", "p99_ms", "p99 latency ms", "lo"),
    ("d", "cpu_pct", "proxy CPU % of one core", None),
    ("d", "cpu_us_per_op", "proxy CPU us per connection (lower is better)", "lo"),
    ("d", "throttled_pct", "periods throttled % (budget: quota ran out)", None),
    ("d", "throttled", "periods throttled (sum of rounds)", None),
    ("d", "errors", "errors (sum of rounds)", None),
    ("e", "mbps", "body MB/s (higher is better)", "hi"),
    ("e", "p99_ms", "p99 latency ms", "lo"),
    ("e", "cpu_pct", "proxy CPU % of one core", None),
    ("e", "cpu_us_per_op", "proxy CPU us per 1 MiB response (lower is better)", "lo"),
    ("e", "throttled_pct", "periods throttled % (budget: quota ran out)", None),
    ("e", "throttled", "periods throttled (sum of rounds)", None),
    ("e", "errors", "errors (sum of rounds)", None),
    ("b", "mps", "messages/s (higher is better)", "hi"),
    ("b", "p50_us", "p50 round trip us", "lo"),
    ("b", "p99_us", "p99 round trip us", "lo"),
    ("b", "cpu_pct", "proxy CPU % of one core", None),
    ("b", "cpu_us_per_op", "proxy CPU us per message (lower is better)", "lo"),
    ("b", "throttled_pct", "periods throttled % (budget: quota ran out)", None),
    ("b", "throttled", "periods throttled (sum of rounds)", None),
    ("b", "errors", "errors (sum of rounds)", None),
    ("c", "rss_before_mib", "RSS with no connection MiB", "lo"),
    ("c", "rss_after_mib", "RSS with the tunnels MiB", "lo"),
    ("c", "bytes_per_tunnel", "bytes per tunnel (lower is better)", "lo"),
    ("c", "opened", "tunnels open", None),
    ("c", "errors", "failed opens + closes (sum of rounds)", None),
]
SUMMED = {"errors", "throttled"}
BLOCK_BEGIN = "<!-- compare.py workers={} begin -->"
BLOCK_END = "<!-- compare.py workers={} end -->"
BUDGET_BEGIN = "<!-- compare.py workers={} budget={} begin -->"
BUDGET_END = "<!-- compare.py workers={} budget={} end -->"


def summarize(values: list[float], metric: str) -> float | None:
    if not values:
        return None
    return sum(values) if metric in SUMMED else statistics.median(values)


def fmt(x: float | None) -> str:
    if x is None or x != x:
        return "—"
    if float(x).is_integer() and abs(x) < 1000:
        return str(int(x))
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def quotient(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or a != a or b != b or b == 0:
        return None
    return a / b


def ratio(a: float | None, b: float | None) -> str:
    q = quotient(a, b)
    return "—" if q is None else f"{q:.2f}"


def best_of(values: list[float | None], better: str | None) -> float | None:
    vals = [v for v in values if v is not None and v == v]
    if not better or not vals:
        return None
    return max(vals) if better == "hi" else min(vals)


def per_round(results: dict, key: str, metric: str, targets) -> tuple[dict, dict]:
    """({target: the metric's value in each round}, {target: their summary}) for one scenario."""
    per = {t: [r[metric] for r in results[key].get(t, []) if metric in r] for t in targets}
    return per, {t: summarize(per[t], metric) for t in targets}


def raw_line(scenario: str, label: str, per: dict, targets) -> str:
    """The per-round values of one metric, target after target, for a report's raw section."""
    return f"- {scenario}, {label}: " + " / ".join(
        ", ".join(fmt(v) for v in per[t]) or "—" for t in targets)


def medians(results: dict, key: str, metric: str) -> dict[str, float | None]:
    per = results.get(key, {})
    return {t: summarize([r[metric] for r in per.get(t, []) if metric in r], metric) for t in per}


def scaling_table(results: dict, budget: float | None = None) -> list[str]:
    """budget (CPUs per worker): a column of periods throttled, and the budget in the title."""
    what = f", a budget of {budget:g} CPU per worker" if budget else ""
    lines = ["", f"Scaling (scenario a against each proxy with 1 and with 2 workers{what}; medians):", "",
             "| proxy | req/s 1 worker | req/s 2 workers | 2 / 1 | p99 ms 1 / 2 | "
             "proxy CPU % 1 / 2 | CPU us per request 1 / 2 |" + (" periods throttled % 1 / 2 |" if budget else ""),
             "|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if budget else "")]
    rps, p99 = medians(results, "w", "rps"), medians(results, "w", "p99_ms")
    cpu, cpr = medians(results, "w", "cpu_pct"), medians(results, "w", "cpu_us_per_op")
    thr = medians(results, "w", "throttled_pct")
    for name in PROXIES:
        one, two = f"{name}-1", f"{name}-2"
        if one not in rps:
            continue
        lines.append(f"| {name} | {fmt(rps[one])} | {fmt(rps[two])} | {ratio(rps[two], rps[one])} | "
                     f"{fmt(p99[one])} / {fmt(p99[two])} | {fmt(cpu[one])} / {fmt(cpu[two])} | "
                     f"{fmt(cpr[one])} / {fmt(cpr[two])} |"
                     + (f" {fmt(thr[one])} / {fmt(thr[two])} |" if budget else ""))
    return lines


def targets_table(s: Setup, results: dict) -> list[str]:
    """Issue 9's targets that this run measures: tether / best of nginx and HAProxy."""
    rows: list[tuple[str, str, str]] = []

    def vs_best(key: str, metric: str, better: str, goal: float, what: str) -> None:
        if key not in results:
            return
        m = medians(results, key, metric)
        best = best_of([m.get("nginx"), m.get("haproxy")], better)
        q = quotient(m.get("tether"), best)
        if q is None:
            return
        met = q >= goal if better == "hi" else q <= goal
        rows.append((what, f"{q:.2f}", "yes" if met else "no"))

    vs_best("a", "rps", "hi", 1.2, "HTTP keep-alive requests/s ≥ 1.2 × best")
    stall = ""
    if s.budgets:  # a request caught by the throttle waits out the rest of the period
        a = s.args
        stall = (f"; under the budget mostly the throttle's wait, period - quota = "
                 f"{(a.cpu_period_us - round(a.cpu_budget * a.workers * a.cpu_period_us)) / 1000:g} ms")
    vs_best("a", "p99_ms", "lo", 1.0, f"HTTP keep-alive p99 no worse than best (≤ 1.0{stall})")
    vs_best("d", "rps", "hi", 1.0, "connection per request ≥ 1.0 × best")
    vs_best("b", "mps", "hi", 1.2, "WebSocket messages/s ≥ 1.2 × best")
    vs_best("c", "bytes_per_tunnel", "lo", 0.5, "bytes per idle tunnel ≤ 0.5 × best")
    if "c" in results:
        opened = medians(results, "c", "opened").get("tether")
        most = (s.nofile - FD_MARGIN) // 2
        why = (f"RLIMIT_NOFILE {s.nofile} allows at most {most:,} a process" if most < 100000
               else f"run with --idle-conns {s.args.idle_conns}")
        rows.append(("100,000 idle tunnels in one process", f"{fmt(opened)} open",
                     "yes" if opened and opened >= 100000 else f"not measured ({why})"))
    if "w" in results:
        r = medians(results, "w", "rps")
        q = quotient(r.get("tether-2"), r.get("tether-1"))
        if q is not None:
            rows.append(("2 workers ≥ 1.8 × one worker", f"{q:.2f}", "yes" if q >= 1.8 else "no"))
    if "a" in results and not s.budgets:  # under a budget direct is not comparable
        m = medians(results, "a", "rps")
        q = quotient(m.get("tether"), m.get("direct"))
        if q is not None:
            rows.append(("keep-alive ≥ 0.70 × direct", f"{q:.2f}", "yes" if q >= 0.7 else "no"))
    if not rows:
        return []
    under = (f" under the same CPU budget, {s.args.cpu_budget:g} CPU per worker for every proxy"
             if s.budgets else "")
    return ["", f"Targets of issue 9 measured here{under} (tether / best of nginx and HAProxy unless "
            "said; `affinity` and Redis overheads: affinity_overhead.py, below):", "",
            "| target | measured | met |", "|---|---:|---|"] + [f"| {a} | {b} | {c} |" for a, b, c in rows]


def budget_text(s: Setup) -> list[str]:
    """--cpu-budget: the report's paragraph on the cgroups (none without a budget)."""
    if s.budgets is None:
        return []
    a = s.args
    period = a.cpu_period_us
    return [f"- **Proxy-bound mode**: each proxy's whole process tree (tether's process, "
            f"nginx's master and workers, HAProxy's process) in a cgroup of its own with a CFS "
            f"bandwidth quota of {a.cpu_budget:g} CPU per worker ({a.workers} worker"
            f"{'s' if a.workers != 1 else ''}: {a.cpu_budget * a.workers:g} CPU, "
            f"{round(a.cpu_budget * a.workers * period)} us every {period} us; w: "
            f"{a.cpu_budget:g} and {2 * a.cpu_budget:g} CPU), by tools/bench/cpu_budget.py "
            f"({s.budgets.describe()}). The clients, the backends and direct run unbudgeted "
            f"(in one cgroup with no quota), so the proxy's CPU, not theirs, bounds requests/s: "
            "the comparison of a load balancer on a machine of its own. Each of these cgroups has "
            f"{a.cpu_weight:g}x the default scheduling weight, so that other work on the machine "
            "takes neither the proxy's budget nor the load's CPU. Proxy CPU % near "
            f"{100 * a.cpu_budget * a.workers:g} and most periods throttled mean the budget held "
            "the proxy (a note below names any run where it did not). Periods throttled: CFS "
            "periods in which the proxy used its whole quota and waited for the next (cpu.stat "
            "nr_throttled over the client run; % of nr_periods, the periods in which it was "
            "runnable). The unbudgeted tables stay the primary ones."]


def budget_notes(s: Setup, results: dict) -> list[str]:
    """--cpu-budget: the runs in which a proxy used less than 90% of its budget (held by the
    client, the backend or other load rather than by its quota), by scenario and proxy."""
    if s.budgets is None:
        return []
    a = s.args
    short = []
    for key in ("a", "d", "e", "b", "w"):
        cpu = medians(results, key, "cpu_pct")
        for t, v in cpu.items():
            workers = int(t.split("-")[1]) if key == "w" else a.workers
            budget = 100 * a.cpu_budget * workers
            if v is not None and v == v and v < 0.9 * budget:
                short.append(f"{SCENARIOS[key]} {t} {v:.0f}% of {budget:g}%")
    if not short:
        return []
    return ["Proxies below 90% of their budget (median CPU; there requests/s was not bounded by "
            "the budget alone): " + "; ".join(short) + "."]


def report(s: Setup, results: dict, info: dict[str, str], started: str) -> str:
    a = s.args
    w = a.workers
    budget = a.cpu_budget if s.budgets else None
    begin, end = ((BUDGET_BEGIN.format(w, f"{budget:g}"), BUDGET_END.format(w, f"{budget:g}"))
                  if budget else (BLOCK_BEGIN.format(w), BLOCK_END.format(w)))
    title = f"## tether vs nginx vs HAProxy vs direct, {w} worker{'s' if w != 1 else ''}"
    if budget:
        title = (f"## Proxy-bound: every proxy held to {budget:g} CPU per worker, "
                 f"{w} worker{'s' if w != 1 else ''}")
    lines = [
        begin,
        title,
        "",
        f"Generated {started} by `{info['command']}` (commit {info['commit']}).",
        "",
        f"- Machine: {info['nproc']} CPUs, {info['cpu']}, {info['memory']} RAM, "
        f"Linux {info['kernel']}; load average {info['load_start']} at start, "
        f"{info['load_end']} at the end (other work on the machine shows up as noise).",
        f"- Versions: {info['tether']}; {info['nginx']}; {info['haproxy']}; {info['wrk']}.",
        f"- One `tether-demo-backend --threads 1` behind every proxy (b: `tether-ws-echo`, "
        f"tools/bench/ws_echo_backend.cpp); tether `workers: {w}`, "
        f"nginx `worker_processes {w}`, HAProxy `nbthread {w}`; everything on 127.0.0.1 of one "
        f"machine (clients, proxies and backend share its CPUs). "
        f"{a.rounds} round{'s' if a.rounds != 1 else ''}, each interleaved tether, nginx, haproxy, "
        f"direct, after a discarded {a.warmup}s warm-up of each; medians shown (error counts are "
        f"summed). RLIMIT_NOFILE {s.nofile}. Proxy CPU is utime + stime from /proc over the client "
        "run (nginx: master + workers). Best = the better of nginx and HAProxy for that metric.",
        f"- a: `wrk -t1 -c{WRK_CONNS} -d{a.duration}s --latency`, `GET /` (16-byte body). "
        f"d: the same with `-H \"Connection: close\"` (every request a new connection). "
        f"e: `wrk -t1 -c{BIG_CONNS}` on `/bytes?n={BIG_BYTES}`, MB/s = responses/s × 1,048,576 / 10^6. "
        f"b: `tether-ws-bench echo`, {WS_CONNS} connections, {WS_SIZE}-byte binary messages, "
        f"closed loop, {a.duration}s. c: `tether-ws-bench idle`, {idle_conns(s)} WebSocket "
        f"tunnels each carrying one message, a fresh proxy per round; RSS of tether's process, "
        f"of nginx's master + workers, of HAProxy's process; bytes per tunnel = "
        f"(after - before) / tunnels open. w: scenario a with 1 and 2 workers of each proxy.",
        "- nginx: upstream keepalive 128 (tether's default 32 keeps up to 4 x 32 idle for 1 s), "
        "proxy_http_version 1.1, Connection \"\" or upgrade, "
        "proxy_buffering on, proxy_max_temp_file_size 0, access_log off, worker_connections 200000, "
        f"worker_rlimit_nofile {min(300000, s.nofile)}, keepalive_requests 1000000, reuseport "
        "backlog=4096, 1h proxy timeouts. HAProxy: mode http, option http-keep-alive (no "
        f"http-server-close), http-reuse always, maxconn {haproxy_maxconn(s)}, timeout "
        "client/server/tunnel/http-keep-alive 1h, no logging. Both set, for parity with tether's "
        "defaults: X-Forwarded-For/-Proto/-Host, X-Real-IP and X-Request-Id. tether: "
        "access_log off, admin off, affinity none, round_robin.",
        *budget_text(s),
        "",
        "| scenario | metric | tether | nginx | HAProxy | direct | tether/nginx | tether/HAProxy "
        "| tether/best | tether/direct |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    raw = ["", "Per-round values (tether / nginx / HAProxy / direct):", ""]
    for key, metric, label, better in METRICS:
        if key not in results:
            continue
        per, med = per_round(results, key, metric, TARGETS)
        if not any(per.values()):
            continue  # e.g. periods throttled without --cpu-budget
        best = best_of([med["nginx"], med["haproxy"]], better)
        lines.append(f"| {SCENARIOS[key]} | {label} | {fmt(med['tether'])} | {fmt(med['nginx'])} | "
                     f"{fmt(med['haproxy'])} | {fmt(med['direct'])} | "
                     f"{ratio(med['tether'], med['nginx'])} | {ratio(med['tether'], med['haproxy'])} | "
                     f"{ratio(med['tether'], best)} | {ratio(med['tether'], med['direct'])} |")
        raw.append(raw_line(SCENARIOS[key], label, per, TARGETS))
    if "w" in results:
        lines += scaling_table(results, budget)
        for t, runs in results["w"].items():
            name, count = t.split("-")
            raw.append(f"- {SCENARIOS['w']}, {name} with {count} worker{'s' if count != '1' else ''}, requests/s: "
                       + ", ".join(fmt(r["rps"]) for r in runs))
    lines += targets_table(s, results)
    notes = info.get("notes", []) + budget_notes(s, results)
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines + raw + ["", end]) + "\n"


def write_out(path: Path, block: str, workers: int) -> None:
    """Replaces this worker count's block in path, keeping the rest; a file written before
    blocks existed loses only its old generated part (everything before its first `## `)."""
    begin, end = BLOCK_BEGIN.format(workers), BLOCK_END.format(workers)
    title = "# tether benchmarks\n\n"
    text = path.read_text() if path.exists() else title
    if begin in text and end in text:
        i, j = text.index(begin), text.index(end) + len(end) + 1
        text = text[:i] + block + text[j:]
    elif "<!-- compare.py workers=" in text:
        blocks = list(re.finditer(r"<!-- compare\.py workers=(\d+) end -->\n?", text))
        after = [m for m in blocks if int(m.group(1)) < workers]
        if after:  # keep blocks in worker order
            i = after[-1].end()
        else:
            i = text.index("<!-- compare.py workers=")
        text = text[:i] + ("\n" if after else "") + block + ("" if after else "\n") + text[i:]
    else:
        rest = text[text.index("\n## "):].lstrip("\n") if "\n## " in text else ""
        text = title + block + ("\n" + rest if rest else "")
    path.write_text(text)


def write_budget_out(path: Path, block: str, workers: int, budget: float) -> None:
    """--cpu-budget: replaces this (workers, budget) block in path, keeping the rest; a new one
    goes after the budget blocks of fewer workers, else before those of more, else after the
    last unbudgeted block and the prose that follows it (before the next `## ` heading)."""
    begin, end = BUDGET_BEGIN.format(workers, f"{budget:g}"), BUDGET_END.format(workers, f"{budget:g}")
    text = path.read_text() if path.exists() else "# tether benchmarks\n"
    if begin in text and end in text:
        i, j = text.index(begin), text.index(end) + len(end) + 1
        path.write_text(text[:i] + block + text[j:])
        return
    ends = list(re.finditer(r"<!-- compare\.py workers=(\d+) budget=\S+ end -->\n?", text))
    begins = list(re.finditer(r"<!-- compare\.py workers=(\d+) budget=\S+ begin -->", text))
    fewer = [m for m in ends if int(m.group(1)) <= workers]
    more = [m for m in begins if int(m.group(1)) > workers]
    if fewer:
        i = fewer[-1].end()
        text = text[:i] + "\n" + block + text[i:]
    elif more:
        i = more[0].start()
        text = text[:i] + block + "\n" + text[i:]
    else:
        plain = list(re.finditer(r"<!-- compare\.py workers=\d+ end -->\n?", text))
        start = plain[-1].end() if plain else 0
        k = text.find("\n## ", start)
        if k < 0:
            text = text.rstrip("\n") + "\n\n" + block
        else:
            text = text[:k + 1] + block + "\n" + text[k + 1:]
    path.write_text(text)
