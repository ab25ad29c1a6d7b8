"""Shared by test_hostile.py: the hostile-request corpus reader and a recording backend.

The corpus (tests/data/hostile/*.case) is one file per raw request:

    # what the case is about
    expect: 400            (statuses of the responses in order, or "close": no answer at all)
    forward: 1             (requests the backend must receive; 0 when absent: not one byte;
                            "partial": a prefix of the request, never a complete one)
    body: hello            (optional: the body the forwarded request must carry)
    ---
    POST /r HTTP/1.1\\r\\n  (the bytes, escaped: \\r \\n \\t \\\\ \\xHH; the file's own
    Host: x\\r\\n             line breaks are ignored)

RecordingBackend is a strict HTTP/1.1 origin server on 127.0.0.1 that keeps every byte it
receives and every request it parses. It answers 200 "ok" to each request. It flags any
ambiguity it sees (Content-Length with Transfer-Encoding, repeated Content-Length, a
Transfer-Encoding other than "chunked", bytes it cannot parse) so a test can assert that
tether never sent one.
"""

from __future__ import annotations

import os
import re
import socket
import threading
from dataclasses import dataclass, field

CORPUS_DIR = os.path.join(os.path.dirname(__file__), "..", "data", "hostile")


@dataclass
class Case:
    name: str
    raw: bytes
    expect: list  # ints (statuses) or ["close"]
    forward: int | str = 0
    body: bytes | None = None
    note: str = ""


def unescape(text: str) -> bytes:
    out = bytearray()
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\n":
            i += 1
            continue
        if c != "\\":
            out += c.encode()
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "x":
            out.append(int(text[i + 2:i + 4], 16))
            i += 4
            continue
        out += {"r": b"\r", "n": b"\n", "t": b"\t", "\\": b"\\"}[nxt]
        i += 2
    return bytes(out)


def load_case(path: str) -> Case:
    with open(path, encoding="ascii") as f:
        text = f.read()
    meta, _, raw = text.partition("\n---\n")
    case = Case(os.path.basename(path)[:-len(".case")], unescape(raw), [])
    for line in meta.splitlines():
        if line.startswith("#"):
            case.note = line[1:].strip()
            continue
        key, _, value = line.partition(":")
        value = value.strip()
        if key == "expect":
            case.expect = [v if v == "close" else int(v) for v in value.split()]
        elif key == "forward":
            case.forward = value if value == "partial" else int(value)
        elif key == "body":
            case.body = unescape(value)
        else:
            raise ValueError(f"{path}: unknown key {key!r}")
    if not case.expect:
        raise ValueError(f"{path}: no expect")
    return case


def load_corpus() -> list[Case]:
    names = sorted(n for n in os.listdir(CORPUS_DIR) if n.endswith(".case"))
    return [load_case(os.path.join(CORPUS_DIR, n)) for n in names]


# ----------------------------------------------------------------------------- backend

TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


class Ambiguous(Exception):
    pass


@dataclass
class Seen:
    method: bytes
    target: bytes
    version: bytes
    headers: list
    body: bytes = b""
    framing: str = "none"


@dataclass
class ConnRecord:
    data: bytearray = field(default_factory=bytearray)
    requests: list = field(default_factory=list)
    problems: list = field(default_factory=list)


class RecordingBackend:
    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.conns: list[ConnRecord] = []
        self._stop = False
        self._threads = []
        self._accept = threading.Thread(target=self._accept_loop, daemon=True)
        self._accept.start()

    # snapshot helpers
    def requests(self) -> list[Seen]:
        with self.lock:
            return [r for c in self.conns for r in c.requests]

    def problems(self) -> list[str]:
        with self.lock:
            return [p for c in self.conns for p in c.problems]

    def bytes_received(self) -> int:
        with self.lock:
            return sum(len(c.data) for c in self.conns)

    def close(self):
        self._stop = True
        try:
            self.sock.close()
        except OSError:
            pass

    def _accept_loop(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            rec = ConnRecord()
            with self.lock:
                self.conns.append(rec)
            t = threading.Thread(target=self._serve, args=(conn, rec), daemon=True)
            t.start()

    def _serve(self, conn: socket.socket, rec: ConnRecord):
        conn.settimeout(30)
        buf = bytearray()

        def fill():
            chunk = conn.recv(65536)
            if not chunk:
                raise EOFError
            with self.lock:
                rec.data += chunk
            buf.extend(chunk)

        def line() -> bytes:
            while b"\r\n" not in buf:
                fill()
            i = buf.index(b"\r\n")
            out = bytes(buf[:i])
            del buf[:i + 2]
            return out

        def exact(n: int) -> bytes:
            while len(buf) < n:
                fill()
            out = bytes(buf[:n])
            del buf[:n]
            return out

        try:
            while True:
                while not buf:
                    fill()
                seen = self._read_request(line, exact)
                with self.lock:
                    rec.requests.append(seen)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        except Ambiguous as e:
            with self.lock:
                rec.problems.append(str(e))
        except (EOFError, OSError):
            pass
        finally:
            conn.close()

    @staticmethod
    def _read_request(line, exact) -> Seen:
        parts = line().split(b" ")
        if len(parts) != 3 or not TOKEN.match(parts[0]) or parts[2] not in (b"HTTP/1.1",
                                                                            b"HTTP/1.0"):
            raise Ambiguous(f"bad request line {parts!r}")
        headers = []
        while True:
            h = line()
            if not h:
                break
            name, colon, value = h.partition(b":")
            if not colon or not TOKEN.match(name) or re.search(rb"[\x00-\x08\x0a-\x1f\x7f]",
                                                                value):
                raise Ambiguous(f"bad header line {h!r}")
            headers.append((name.lower(), value.strip(b" \t")))
        seen = Seen(parts[0], parts[1], parts[2], headers)
        cl = [v for n, v in headers if n == b"content-length"]
        te = [v for n, v in headers if n == b"transfer-encoding"]
        hosts = [v for n, v in headers if n == b"host"]
        if len(hosts) > 1:
            raise Ambiguous(f"{len(hosts)} Host fields")
        if cl and te:
            raise Ambiguous("Content-Length with Transfer-Encoding")
        if len(cl) > 1 or len(te) > 1:
            raise Ambiguous("repeated framing field")
        if te:
            if te[0].lower() != b"chunked":
                raise Ambiguous(f"Transfer-Encoding {te[0]!r}")
            seen.framing = "chunked"
            body = bytearray()
            while True:
                size_line = line().split(b";")[0]
                if not re.fullmatch(rb"[0-9a-fA-F]+", size_line):
                    raise Ambiguous(f"bad chunk size {size_line!r}")
                n = int(size_line, 16)
                if n == 0:
                    while line():
                        pass
                    break
                body += exact(n)
                if exact(2) != b"\r\n":
                    raise Ambiguous("chunk without CRLF")
            seen.body = bytes(body)
        elif cl:
            if not re.fullmatch(rb"[0-9]+", cl[0]):
                raise Ambiguous(f"Content-Length {cl[0]!r}")
            seen.framing = "length"
            seen.body = exact(int(cl[0]))
        return seen
