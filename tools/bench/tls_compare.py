#!/usr/bin/env python3
"""tether and nginx terminating TLS with the same certificate, in front of the same backend.

    python3 tools/bench/tls_compare.py [--workers 1] [--rounds 3] [--duration 5]
                                       [--clients 2] [--key rsa2048|p256] [--out docs/benchmarks-tls.md]

The certificate (a test CA and a leaf for "localhost", RSA 2048 by default: the common web
certificate, whose signature is the server's dominant handshake cost and whose verification is
cheap for the client) is made with the openssl command line in a temporary directory. One
tether-demo-backend serves both proxies; tether (`workers: W`, `tls` on its listener) and nginx
(`worker_processes W`, `listen ... ssl`, `ssl_session_cache shared:SSL:10m`, tickets on) are
otherwise configured as in compare.py (whose helpers this script imports). Scenarios:

  full       full handshakes per second: C load client processes in parallel (this script run
             with --handshake-client: Python's ssl module, i.e. the same OpenSSL), each opening
             connections in a loop: connect, handshake (TLS 1.3), close, no request
  resumed    resumed handshakes per second: the same, every connection offering the session
             (ticket) of a first connection that made one request; the share resumed is counted
             (SSLSocket.session_reused)

`openssl s_time` is not used: its -reuse does not resume TLS 1.3 sessions (0 of 687 connections
in a trial: it takes the session before the tickets arrive) and it reports whole real seconds.
  keepalive  keep-alive HTTPS requests per second: `wrk -t1 -c64` on https://.../ (small
             responses through the proxy to the backend)

Every scenario runs --rounds rounds, each round tether then nginx (the order alternates from
round to round), so drift of a shared machine hits both alike; the report gives medians, the
ratio tether/nginx, the proxy's CPU time per operation (less sensitive to other load) and the
load client's CPU share, to show whether the client was the bottleneck. With --out the report
replaces its own block in the file. Everything started is stopped by PID. Python 3.11 stdlib.
"""
from __future__ import annotations

import argparse
import resource
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare as cmp  # noqa: E402  (the shared helpers: processes, configs, machine info)

PROXIES = ("tether", "nginx")
SCENARIOS = {"full": "full handshakes", "resumed": "resumed handshakes",
             "keepalive": "keep-alive HTTPS"}
BLOCK_BEGIN = "<!-- tls_compare.py workers={} begin -->"
BLOCK_END = "<!-- tls_compare.py workers={} end -->"
log = cmp.log


# ------------------------------------------------------------------------------ certificate
def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60,
                   stdin=subprocess.DEVNULL)


def make_certificate(d: Path, key: str) -> tuple[Path, Path]:
    """A CA and a leaf for localhost signed by it; (chain file, key file)."""
    newkey = (["-newkey", "rsa:2048"] if key == "rsa2048" else
              ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"])
    openssl("req", "-x509", *newkey, "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=tls_compare CA", "-addext", "basicConstraints=critical,CA:TRUE", cwd=d)
    openssl("req", *newkey, "-nodes", "-keyout", "leaf.key", "-out", "leaf.csr",
            "-subj", "/CN=localhost", cwd=d)
    (d / "leaf.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-set_serial", "7", "-days", "2", "-extfile", "leaf.ext", "-out", "leaf.crt", cwd=d)
    (d / "chain.pem").write_text((d / "leaf.crt").read_text() + (d / "ca.pem").read_text())
    return d / "chain.pem", d / "leaf.key"


# ------------------------------------------------------------------------------ proxies
def tether_tls_config(s: cmp.Setup, port: int, cert: Path, key: Path) -> str:
    """compare.py's tether configuration with `tls` on its listener."""
    text = cmp.tether_config(s, port, [s.backend_port], s.args.workers)
    listen = "    upstream: bench\n"
    assert listen in text
    return text.replace(listen, listen + f"    tls:\n      certificate: {cert}\n"
                                          f"      private_key: {key}\n", 1)


def nginx_tls_config(s: cmp.Setup, port: int, d: Path, cert: Path, key: Path) -> str:
    """compare.py's nginx configuration with `ssl` on its listener (tether's equivalents:
    TLS 1.2 and 1.3, a session cache shared by the workers, tickets)."""
    text = cmp.nginx_config(s, port, d, [s.backend_port], s.args.workers)
    listen = f"        listen 127.0.0.1:{port} reuseport backlog=4096;\n"
    assert listen in text
    return text.replace(listen, f"        listen 127.0.0.1:{port} ssl reuseport backlog=4096;\n"
                                f"        ssl_certificate {cert};\n"
                                f"        ssl_certificate_key {key};\n"
                                "        ssl_protocols TLSv1.2 TLSv1.3;\n"
                                "        ssl_session_cache shared:SSL:10m;\n"
                                "        ssl_session_tickets on;\n", 1)


def wait_https_ready(port: int, proc: cmp.Proc, timeout: float = cmp.START_TIMEOUT) -> None:
    """Until GET / over TLS answers 200 "hello from ..." (the backend is reached)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    deadline, last = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.p.returncode} (see {proc.stderr_path})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as raw:
                with ctx.wrap_socket(raw, server_hostname="localhost") as c:
                    c.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                    data = b""
                    while chunk := c.recv(4096):
                        data += chunk
            if data.startswith(b"HTTP/1.1 200") and b"hello from" in data:
                return
            last = repr(data[:80])
        except OSError as e:
            last = str(e)
        time.sleep(0.05)
    raise RuntimeError(f"{proc.name} on port {port} not ready: {last}")


def start_proxy(s: cmp.Setup, name: str, cert: Path, key: Path) -> tuple[cmp.Proc, int]:
    port = cmp.free_port()
    d = s.tmp / name
    d.mkdir(exist_ok=True)
    if name == "tether":
        cfg = d / "tether.yaml"
        cfg.write_text(tether_tls_config(s, port, cert, key))
        proc = cmp.Proc(name, [s.args.tether, "-c", str(cfg)], s.tmp)
    else:
        cfg = d / "nginx.conf"
        cfg.write_text(nginx_tls_config(s, port, d, cert, key))
        proc = cmp.Proc(name, [s.args.nginx, "-p", str(d), "-c", str(cfg), "-e",
                               str(d / "error.log"), "-g", f"daemon off; pid {d}/nginx.pid;"], s.tmp)
    try:
        wait_https_ready(port, proc)
    except RuntimeError:
        proc.stop()
        raise
    return proc, port


# ------------------------------------------------------------------------------ clients
def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def handshake_client(port: int, seconds: float, resume: bool) -> None:
    """The load client (run as `tls_compare.py --handshake-client ...` processes): new TCP
    connections for `seconds`, each a TLS handshake and a close, no request. resume: the
    session of a first connection that made one request (so TLS 1.3 tickets were read) is
    offered on every connection. Prints JSON: connections, resumed, elapsed."""
    import json
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # as s_time: no chain check
    session = None
    if resume:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as c:
                c.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                while c.recv(4096):
                    pass
                session = c.session
    conns = resumed = failed = 0
    t0 = time.monotonic()
    end = t0 + seconds
    while time.monotonic() < end:
        try:
            raw = socket.create_connection(("127.0.0.1", port), timeout=5)
            c = ctx.wrap_socket(raw, server_hostname="localhost", session=session)
            conns += 1
            resumed += c.session_reused
            c.close()
        except OSError:
            failed += 1
    print(json.dumps({"connections": conns, "resumed": resumed, "failed": failed,
                      "elapsed": time.monotonic() - t0}))


def run_handshakes(s: cmp.Setup, port: int, pid: int | None, d: int, reuse: bool) -> dict[str, float]:
    """C parallel handshake_client processes for d seconds; handshakes/s summed."""
    argv = [sys.executable, str(Path(__file__).resolve()), "--handshake-client", str(port),
            str(d)] + (["--resume"] if reuse else [])
    cpu0, t0 = (cmp.cpu_seconds(pid), time.monotonic()) if pid else (0.0, 0.0)
    c0 = children_cpu()
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL) for _ in range(s.args.clients)]
    conns = resumed = failed = 0
    per_s = 0.0
    for p in procs:
        try:
            out, err = p.communicate(timeout=d + 60)
        except subprocess.TimeoutExpired:
            p.kill()  # our own child, by PID
            out, err = p.communicate()
        try:
            j = cmp.last_json(out.decode(errors="replace"))
        except (RuntimeError, ValueError) as e:
            raise RuntimeError(f"handshake client failed: {err.decode(errors='replace')[-800:]}") from e
        conns += j["connections"]
        resumed += j["resumed"]
        failed += j["failed"]
        per_s += j["connections"] / j["elapsed"]
    wall = time.monotonic() - t0 if pid else float(d)
    res = {"hps": per_s, "client_cpu_pct": 100 * (children_cpu() - c0) / wall, "errors": failed}
    if reuse:
        res["resumed_pct"] = 100 * resumed / conns if conns else float("nan")
    if pid:
        res |= cmp.cpu_use(pid, cpu0, t0, conns)
    return res


def run_keepalive(s: cmp.Setup, port: int, pid: int | None, d: int) -> dict[str, float]:
    """wrk on https://: compare.py's run_wrk, and the share of a core wrk used."""
    t0, c0 = time.monotonic(), children_cpu()
    res = cmp.run_wrk(s, port, pid, d, scheme="https")
    wall = time.monotonic() - t0 if pid else float(d)
    return res | {"client_cpu_pct": 100 * (children_cpu() - c0) / wall}


def run_load(s: cmp.Setup, key: str, port: int, pid: int | None, d: int) -> dict[str, float]:
    if key == "keepalive":
        return run_keepalive(s, port, pid, d)
    return run_handshakes(s, port, pid, d, reuse=key == "resumed")


# ------------------------------------------------------------------------------ report
METRICS = [
    ("full", "hps", "handshakes/s (higher is better)", "hi"),
    ("full", "cpu_us_per_op", "proxy CPU us per handshake (lower is better)", "lo"),
    ("full", "cpu_pct", "proxy CPU % of one core", None),
    ("full", "client_cpu_pct", "load client CPU % of one core (all processes)", None),
    ("full", "errors", "failed connections (sum of rounds)", None),
    ("resumed", "hps", "resumed handshakes/s (higher is better)", "hi"),
    ("resumed", "resumed_pct", "connections resumed %", None),
    ("resumed", "cpu_us_per_op", "proxy CPU us per handshake (lower is better)", "lo"),
    ("resumed", "cpu_pct", "proxy CPU % of one core", None),
    ("resumed", "client_cpu_pct", "load client CPU % of one core (all processes)", None),
    ("resumed", "errors", "failed connections (sum of rounds)", None),
    ("keepalive", "rps", "requests/s (higher is better)", "hi"),
    ("keepalive", "p99_ms", "p99 latency ms", "lo"),
    ("keepalive", "cpu_us_per_op", "proxy CPU us per request (lower is better)", "lo"),
    ("keepalive", "cpu_pct", "proxy CPU % of one core", None),
    ("keepalive", "client_cpu_pct", "wrk CPU % of one core", None),
    ("keepalive", "errors", "errors (sum of rounds)", None),
]


def report(s: cmp.Setup, results: dict, info: dict, started: str) -> str:
    w = s.args.workers
    lines = [
        BLOCK_BEGIN.format(w), "",
        f"## TLS: tether vs nginx, {w} worker{'s' if w > 1 else ''} each", "",
        f"Run {started}: `{info['command']}` on tether {info['commit']}.",
        f"Machine: {info['nproc']} CPUs ({info['cpu']}), {info['memory']}, Linux {info['kernel']}; "
        f"load average {info['load_start']} at the start, {info['load_end']} at the end (a shared "
        "machine: other processes ran during the measurement).",
        f"Tools: {info['tether']}; {info['nginx']}; {info['openssl']}; {info['wrk']}.",
        f"Certificate: {s.args.key} leaf for localhost + CA chain, made by the script. "
        f"{s.args.rounds} rounds of {s.args.duration} s per scenario, tether and nginx "
        f"interleaved (order alternating), after {s.args.warmup} s of discarded warm-up each; "
        f"{s.args.clients} handshake client processes in parallel (Python ssl; see the script), "
        f"`wrk -t1 -c"
        f"{cmp.WRK_CONNS}` for keep-alive. Medians; CPU is the proxy's (all its processes) over "
        "the run.",
        "",
        "| scenario | metric | tether | nginx | tether/nginx |",
        "|---|---|---:|---:|---:|",
    ]
    raw = ["", "Per-round values (tether / nginx):", ""]
    for key, metric, label, _ in METRICS:
        if key not in results:
            continue
        per, med = cmp.per_round(results, key, metric, PROXIES)
        lines.append(f"| {SCENARIOS[key]} | {label} | {cmp.fmt(med['tether'])} | "
                     f"{cmp.fmt(med['nginx'])} | {cmp.ratio(med['tether'], med['nginx'])} |")
        raw.append(cmp.raw_line(SCENARIOS[key], label, per, PROXIES))
    notes = info.get("notes", [])
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines + raw + ["", BLOCK_END.format(w)]) + "\n"


def write_out(path: Path, block: str, workers: int) -> None:
    """Replaces this worker count's block in path (appended when absent), keeping the rest."""
    begin, end = BLOCK_BEGIN.format(workers), BLOCK_END.format(workers)
    text = path.read_text() if path.exists() else "# tether TLS benchmarks\n\n"
    if begin in text and end in text:
        i, j = text.index(begin), text.index(end) + len(end) + 1
        text = text[:i] + block + text[j:]
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    tools = ("tether", "backend", "nginx", "wrk")
    cmp.add_tool_args(p, *tools)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=int, default=5, help="seconds per client run")
    p.add_argument("--warmup", type=int, default=1, help="seconds of discarded load per proxy")
    p.add_argument("--clients", type=int, default=2, help="parallel handshake client processes")
    p.add_argument("--key", choices=("rsa2048", "p256"), default="rsa2048")
    p.add_argument("--only", default="full,resumed,keepalive")
    p.add_argument("--out", help="also write the Markdown report to this file")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    a = p.parse_args()
    a.only = [x.strip() for x in a.only.split(",") if x.strip()]
    if bad := [x for x in a.only if x not in SCENARIOS]:
        p.error(f"--only: unknown scenario {bad}; valid: {', '.join(SCENARIOS)}")
    if min(a.workers, a.rounds, a.duration, a.clients) < 1:
        p.error("--workers, --rounds, --duration and --clients must be >= 1")
    cmp.check_tool_args(p, a, *tools)
    return a


def main() -> int:
    if len(sys.argv) >= 4 and sys.argv[1] == "--handshake-client":
        handshake_client(int(sys.argv[2]), float(sys.argv[3]), "--resume" in sys.argv[4:])
        return 0
    a = parse_args()
    nofile = cmp.raise_nofile()
    started = cmp.now_text()
    info = cmp.run_info("tls_compare.py", a) | {"openssl": cmp.tool_version(["openssl", "version"])}
    tmp = Path(tempfile.mkdtemp(prefix="tether-tls-bench-"))
    tmp.chmod(0o755)  # nginx workers run as an unprivileged user when we are root
    s = cmp.Setup(a, tmp, nofile)
    results: dict[str, dict[str, list[dict]]] = {}
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    notes: list[str] = []
    try:
        pki = tmp / "pki"
        pki.mkdir()
        pki.chmod(0o755)
        cert, key = make_certificate(pki, a.key)
        key.chmod(0o644)  # nginx reads it as root anyway; the directory is private to the run
        s.backend_port = cmp.start_backend(s)
        for name in PROXIES:
            s.procs[name], s.ports[name] = start_proxy(s, name, cert, key)
        log("backend :{}, {}; logs in {}".format(s.backend_port, ", ".join(
            f"{n} :{s.ports[n]}" for n in PROXIES), tmp))
        for key_ in a.only:
            results[key_] = {t: [] for t in PROXIES}
            if a.warmup > 0:
                for t in PROXIES:
                    run_load(s, key_, s.ports[t], None, a.warmup)
            for rnd in range(a.rounds):
                order = PROXIES if rnd % 2 == 0 else tuple(reversed(PROXIES))
                for t in order:
                    r = run_load(s, key_, s.ports[t], s.procs[t].pid, a.duration)
                    results[key_][t].append(r)
                    log(f"{SCENARIOS[key_]} round {rnd + 1}/{a.rounds} {t}: "
                        + ", ".join(f"{k}={cmp.fmt(v)}" for k, v in r.items()))
        notes += cmp.exited_notes(s, PROXIES)
    finally:
        cmp.stop_all()
    cmp.finish(s, info, notes, lambda: report(s, results, info, started), write_out)
    return 0


if __name__ == "__main__":
    cmp.run_main(main)
