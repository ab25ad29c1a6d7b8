"""A raw Engine.IO / Socket.IO long-polling client for the replica tests (stdlib only).

One `run_session()` is one Socket.IO client over HTTP long-polling, spoken by hand so that every
request can be sent to a different tether replica:

    GET  /socket.io/?EIO=N&transport=polling           handshake, through replica `start`
    POST 40                                             Socket.IO CONNECT (EIO=4 only: Socket.IO
                                                        2.x servers connect "/" by themselves)
    GET                                                 until the `hello` event (server name)
    POST 42K["whoami"] then GET until the ack 43K[..]   `rounds` times (or until `stop` is set)
    POST 1                                              Engine.IO close

Request i of a session goes to replica (start + i) % len(ports): the handshake through A, then
B, C, A, ... Polling payloads: EIO=4 joins packets with \\x1e; EIO=3 frames each one as
`<length>:<packet>` (length in characters), as in /work/shared/testdata/engineio/.

Each session keeps its cookies like a browser (cookies are per host, not per port, so every
replica sees them). Each thread keeps one keep-alive connection per replica (a browser's pool).

Threading: `Load` runs sessions on bounded threads; every result goes through `Collector`, which
is locked. Every request has a socket timeout; every loop is bounded in count or by a deadline.
"""

import http.client
import itertools
import json
import random
import threading
import time
import urllib.parse

SESSION_UNKNOWN = "session_unknown"


class SessionFailed(Exception):
    def __init__(self, kind, text):
        super().__init__(f"{kind}: {text}")
        self.kind = kind
        self.text = text


class Request:
    __slots__ = ("t", "duration", "replica", "method", "ok")

    def __init__(self, t, duration, replica, method, ok):
        self.t, self.duration, self.replica, self.method, self.ok = t, duration, replica, method, ok


class Session:
    """What one session saw. Times are time.monotonic()."""

    def __init__(self, upstream, eio, start):
        self.upstream = upstream
        self.eio = eio
        self.start = start
        self.sid = None
        self.hello = None      # server name from the hello event
        self.acks = []         # server names from the whoami acks
        self.error = None      # (kind, text) of the failure that ended it
        self.t_start = time.monotonic()
        self.t_handshake = None  # when the handshake answer came
        self.t_end = None
        self.t_last_ok = None  # end of the last successful request
        self.requests = 0

    @property
    def servers(self):
        return {s for s in [self.hello, *self.acks] if s is not None}

    @property
    def sticky_violation(self):
        return len(self.servers) > 1

    @property
    def ok(self):
        return self.error is None and not self.sticky_violation and self.hello is not None


class Collector:
    """Thread-safe sink for sessions and request timings."""

    def __init__(self):
        self.lock = threading.Lock()
        self.sessions = []
        self.requests = []

    def add_request(self, r):
        with self.lock:
            self.requests.append(r)

    def add_session(self, s):
        with self.lock:
            self.sessions.append(s)

    def summary(self):
        with self.lock:
            sessions = list(self.sessions)
            requests = list(self.requests)
        kinds = {}
        samples = []
        for s in sessions:
            if s.error:
                kinds[s.error[0]] = kinds.get(s.error[0], 0) + 1
                if len(samples) < 8:
                    samples.append(f"{s.upstream} sid={s.sid} start={s.start} {s.error[0]}: {s.error[1]}")
        per_server = {}
        for s in sessions:
            if s.hello:
                per_server[s.hello] = per_server.get(s.hello, 0) + 1
        durations = sorted(r.duration for r in requests)
        return {
            "sessions": len(sessions),
            "sessions_ok": sum(1 for s in sessions if s.ok),
            "session_unknown": kinds.get(SESSION_UNKNOWN, 0),
            "errors": sum(kinds.values()),
            "error_kinds": kinds,
            "error_samples": samples,
            "sticky_violations": sum(1 for s in sessions if s.sticky_violation),
            "acks": sum(len(s.acks) for s in sessions),
            "per_server": per_server,
            "requests": len(requests),
            "requests_failed": sum(1 for r in requests if not r.ok),
            "request_ms_max": round(durations[-1] * 1000, 1) if durations else None,
            "request_ms_p50": round(durations[len(durations) // 2] * 1000, 1) if durations else None,
            "request_ms_p99": round(durations[int(len(durations) * 0.99)] * 1000, 1) if durations else None,
        }


class Browser:
    """One thread's keep-alive connections, one per replica port."""

    def __init__(self, timeout):
        self.timeout = timeout
        self.conns = {}

    def close(self):
        for c in self.conns.values():
            c.close()
        self.conns.clear()

    def request(self, port, method, path, body, jar):
        conn = self.conns.get(port)
        if conn is None:
            conn = self.conns[port] = http.client.HTTPConnection("127.0.0.1", port, timeout=self.timeout)
        headers = {}
        if jar:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in jar.items())
        data = None
        if body is not None:
            data = body.encode()
            headers["Content-Type"] = "text/plain;charset=UTF-8"
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
        except BaseException:
            conn.close()
            self.conns.pop(port, None)
            raise
        if resp.will_close:
            conn.close()
            self.conns.pop(port, None)
        for line in resp.headers.get_all("Set-Cookie") or []:
            name, _, value = line.split(";", 1)[0].partition("=")
            if name.strip():
                jar[name.strip()] = value.strip()
        return resp.status, payload.decode("utf-8", "replace")


def decode_payload(eio, body):
    """Splits a polling payload into packets."""
    if eio == 4:
        return body.split("\x1e") if body else []
    packets = []
    i = 0
    while i < len(body):
        colon = body.find(":", i)
        if colon < 0 or not body[i:colon].isdigit():
            raise SessionFailed("bad_payload", f"EIO=3 framing at {i}: {body[:120]!r}")
        n = int(body[i:colon])
        packets.append(body[colon + 1:colon + 1 + n])
        i = colon + 1 + n
    return packets


def encode_packet(eio, packet):
    return packet if eio == 4 else f"{len(packet)}:{packet}"


def run_session(browser, collector, upstream, ports, eio, start, rounds=1, pause=0.0,
                stop=None, deadline=None, max_gets=6):
    """Runs one session; returns its Session (also given to the collector).

    `rounds` whoami round trips, or with `stop` (a threading.Event) as many as fit until it is
    set. `deadline` (monotonic) bounds the whole session."""
    s = Session(upstream, eio, start)
    jar = {}
    counter = itertools.count()
    state = {"connected": False, "last_ping": time.monotonic()}
    pending = []

    def send(method, query, body=None):
        if deadline is not None and time.monotonic() > deadline:
            raise SessionFailed("deadline", "session deadline passed")
        replica = (start + next(counter)) % len(ports)
        t0 = time.monotonic()
        try:
            status, text = browser.request(ports[replica], method,
                                           f"/socket.io/?EIO={eio}&transport=polling{query}", body, jar)
        except Exception as e:  # noqa: BLE001 - every failure is a failed client request
            collector.add_request(Request(t0, time.monotonic() - t0, replica, method, False))
            raise SessionFailed("exception", f"{method} via replica {replica}: {e!r}") from None
        t1 = time.monotonic()
        s.requests += 1
        ok = status == 200
        collector.add_request(Request(t0, t1 - t0, replica, method, ok))
        if status == 400 and "Session ID unknown" in text:
            raise SessionFailed(SESSION_UNKNOWN, f"{method} via replica {replica}: {text[:100]}")
        if not ok:
            raise SessionFailed(f"http_{status}", f"{method} via replica {replica}: {text[:100]!r}")
        s.t_last_ok = t1
        return text

    def post(packet):
        text = send("POST", f"&sid={urllib.parse.quote(s.sid)}", encode_packet(eio, packet))
        if text != "ok":
            raise SessionFailed("bad_post_answer", repr(text[:100]))

    def handle(packet):
        """Returns the packet if it is a Socket.IO event/ack worth looking at."""
        if packet == "2" and eio == 4:  # server ping
            post("3")
        elif packet in ("3", "6") or packet.startswith("3"):  # pong (EIO=3) / noop
            pass
        elif packet.startswith("1"):
            raise SessionFailed("closed", "the server closed the session")
        elif packet.startswith("40"):
            state["connected"] = True
        elif packet.startswith("44"):
            raise SessionFailed("connect_error", packet[:100])
        elif packet.startswith("4"):
            return packet
        return None

    def read_until(pred):
        for _ in range(max_gets):
            while pending:
                p = handle(pending.pop(0))
                if p is not None and pred(p):
                    return p
            text = send("GET", f"&sid={urllib.parse.quote(s.sid)}&t={random.getrandbits(40):x}")
            pending.extend(decode_payload(eio, text))
        raise SessionFailed("no_answer", f"nothing matching after {max_gets} polls")

    def is_event(name):
        def pred(p):
            if not p.startswith("42"):
                return False
            try:
                data = json.loads(p[2:])
            except ValueError:
                return False
            return isinstance(data, list) and data and data[0] == name
        return pred

    try:
        text = send("GET", f"&t={random.getrandbits(40):x}")
        s.t_handshake = time.monotonic()
        packets = decode_payload(eio, text)
        if not packets or not packets[0].startswith("0{"):
            raise SessionFailed("bad_handshake", repr(text[:120]))
        s.sid = json.loads(packets[0][1:])["sid"]
        pending.extend(packets[1:])
        if eio == 4:
            post("40")
        hello = read_until(is_event("hello"))
        s.hello = json.loads(hello[2:])[1]
        if not state["connected"]:
            raise SessionFailed("no_connect", "hello before the CONNECT packet")
        done = 0
        while (stop is None and done < rounds) or (stop is not None and not stop.is_set()):
            if eio == 3 and time.monotonic() - state["last_ping"] > 15:
                post("2")  # EIO=3: the client pings (pingInterval 25 s)
                state["last_ping"] = time.monotonic()
            ack_id = 1 + done
            post(f'42{ack_id}["whoami"]')
            ack = read_until(lambda p, k=ack_id: p.startswith(f"43{k}["))
            s.acks.append(json.loads(ack[2 + len(str(ack_id)):])[0])
            done += 1
            if pause:
                if stop is not None:
                    stop.wait(pause)
                else:
                    time.sleep(pause)
        post("1")
    except SessionFailed as e:
        s.error = (e.kind, e.text)
    except Exception as e:  # noqa: BLE001 - a parsing surprise is a failure too
        s.error = ("unexpected", repr(e))
    s.t_end = time.monotonic()
    collector.add_session(s)
    return s


class Load:
    """Sessions on bounded threads.

    `plan` is a list of (upstream, ports, eio) "lanes"; `threads` per lane. Long mode: each thread
    runs one session until `stop` is set (whoami every `pause` s). Churn mode: each thread runs
    sessions of `rounds` round trips one after another until `stop`, or `count` sessions in all."""

    def __init__(self, collector, plan, threads, timeout=10.0, rounds=1, pause=0.0, long=False,
                 count=None, deadline=None):
        self.collector = collector
        self.plan = plan
        self.threads_per_lane = threads
        self.timeout = timeout
        self.rounds = rounds
        self.pause = pause
        self.long = long
        self.deadline = deadline
        self.stop = threading.Event()
        self.threads = []
        self.lock = threading.Lock()
        self.remaining = {i: count for i in range(len(plan))} if count is not None else None
        self.started = {i: 0 for i in range(len(plan))}

    def _take(self, lane):
        """Claims the next session number of a lane, or None when the lane is done."""
        with self.lock:
            if self.stop.is_set():
                return None
            if self.remaining is not None:
                if self.remaining[lane] <= 0:
                    return None
                self.remaining[lane] -= 1
            n = self.started[lane]
            self.started[lane] += 1
            return n

    def _run(self, lane):
        upstream, ports, eio = self.plan[lane]
        browser = Browser(self.timeout)
        try:
            while True:
                n = self._take(lane)
                if n is None:
                    return
                if self.deadline is not None and time.monotonic() > self.deadline:
                    return
                if self.long:
                    run_session(browser, self.collector, upstream, ports, eio, n % len(ports),
                                pause=self.pause, stop=self.stop, deadline=self.deadline)
                    return
                run_session(browser, self.collector, upstream, ports, eio, n % len(ports),
                            rounds=self.rounds, pause=self.pause, deadline=self.deadline)
        finally:
            browser.close()

    def start(self):
        for lane in range(len(self.plan)):
            for _ in range(self.threads_per_lane):
                t = threading.Thread(target=self._run, args=(lane,), daemon=True)
                t.start()
                self.threads.append(t)
        return self

    def finish(self, timeout):
        """Sets stop and joins; returns False if a thread is still running after `timeout`."""
        self.stop.set()
        return self.join(timeout)

    def join(self, timeout):
        end = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, end - time.monotonic()))
        return not any(t.is_alive() for t in self.threads)
