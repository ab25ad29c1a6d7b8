"""A small HTTP/1.1 + WebSocket backend for the upstream TLS and PROXY-protocol tests, on
Python's ssl module (stdlib only). It runs in threads of the test process, on 127.0.0.1 and a
port bound to 0, and stops by itself (stop(), bounded joins).

Each connection may start with a PROXY protocol header (`expect_proxy`: "v1" or "v2"; the
connection is dropped when it is missing or malformed), then TLS (`context`: a server
SSLContext, maybe requiring a client certificate), then HTTP/1.1 with keep-alive. Every answer
is JSON describing what the backend learnt about the connection:
  conn      connection number (1, 2, ... in accept order), req: request number on it
  proxy     {"version", "src", "sport", "dst", "dport"} from the PROXY header, or null
  sni       the server name the client sent (null: none), tls: the protocol version,
  resumed   whether the TLS session was resumed, client_cert: the client certificate's CN
  path, xff (X-Forwarded-For), real_ip (X-Real-IP)
A request with `Upgrade: websocket` is answered 101 (with X-Backend-Info carrying the same
JSON) and its frames are echoed back until a close frame. Failed TLS handshakes are counted
(`handshake_failures`) with their reasons.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import os
import select
import socket
import ssl
import struct
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from ws_check import read_exact  # noqa: E402  (the demo's WebSocket check, stdlib only)

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
IO_TIMEOUT = 10.0


class ProxyError(ValueError):
    pass


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    try:
        return read_exact(sock, n)
    except ConnectionError:
        raise ProxyError("closed inside the PROXY header") from None


def read_proxy_header(sock: socket.socket, version: str) -> dict:
    """Reads exactly the header (never a byte of what follows: TLS starts right after)."""
    if version == "v1":
        line = b""
        while not line.endswith(b"\r\n"):
            line += _recv_exact(sock, 1)
            if len(line) > 107:
                raise ProxyError("v1 header too long")
        parts = line[:-2].decode("ascii").split(" ")
        if parts[0] != "PROXY" or parts[1] not in ("TCP4", "TCP6") or len(parts) != 6:
            raise ProxyError(f"bad v1 header {line!r}")
        return {"version": 1, "src": parts[2], "dst": parts[3], "sport": int(parts[4]),
                "dport": int(parts[5])}
    head = _recv_exact(sock, 16)
    if head[:12] != V2_SIGNATURE or head[12] != 0x21:
        raise ProxyError(f"bad v2 header {head!r}")
    family, length = head[13], struct.unpack("!H", head[14:16])[0]
    body = _recv_exact(sock, length)
    if family == 0x11:
        src, dst = ipaddress.IPv4Address(body[0:4]), ipaddress.IPv4Address(body[4:8])
        sport, dport = struct.unpack("!HH", body[8:12])
    elif family == 0x21:
        src, dst = ipaddress.IPv6Address(body[0:16]), ipaddress.IPv6Address(body[16:32])
        sport, dport = struct.unpack("!HH", body[32:36])
    else:
        raise ProxyError(f"unexpected v2 family {family:#x}")
    return {"version": 2, "src": str(src), "dst": str(dst), "sport": sport, "dport": dport}


class TlsBackend:
    def __init__(self, context: ssl.SSLContext | None = None, expect_proxy: str | None = None):
        self.context = context
        self.expect_proxy = expect_proxy
        self.connections = 0
        self.handshake_failures: list[str] = []
        self.proxy_failures: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._socks: set[socket.socket] = set()
        if context is not None:
            context.sni_callback = self._on_sni
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)
        self._acceptor.start()

    @staticmethod
    def _on_sni(sslobj, name, _ctx):
        sslobj.tether_sni = name  # read back in _describe
        return None

    # ------------------------------------------------------------------ life cycle

    def stop(self) -> None:
        self._stop.set()
        self.listener.close()
        with self._lock:
            for s in list(self._socks):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
        self._acceptor.join(5)
        for t in list(self._threads):
            t.join(5)

    def __enter__(self) -> TlsBackend:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self.listener], [], [], 0.1)
                if not ready:
                    continue
                sock, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                number = self.connections
                self._socks.add(sock)
            t = threading.Thread(target=self._serve, args=(sock, number), daemon=True)
            self._threads.append(t)
            t.start()

    # ------------------------------------------------------------------ one connection

    def _serve(self, sock: socket.socket, number: int) -> None:
        conn = sock
        try:
            sock.settimeout(IO_TIMEOUT)
            proxy = None
            if self.expect_proxy:
                try:
                    proxy = read_proxy_header(sock, self.expect_proxy)
                except (ProxyError, OSError, UnicodeDecodeError, ValueError) as e:
                    with self._lock:
                        self.proxy_failures.append(str(e))
                    return
            if self.context is not None:
                try:
                    conn = self.context.wrap_socket(sock, server_side=True)
                except (ssl.SSLError, OSError) as e:
                    with self._lock:
                        self.handshake_failures.append(str(e))
                    return
                with self._lock:
                    self._socks.add(conn)
            self._http(conn, number, proxy)
        except (OSError, ValueError):
            pass
        finally:
            with self._lock:
                self._socks.discard(sock)
                self._socks.discard(conn)
            try:
                conn.close()
            except OSError:
                pass

    def _describe(self, conn, number: int, req: int, proxy, path: str, headers: dict) -> dict:
        info = {"conn": number, "req": req, "proxy": proxy, "path": path,
                "xff": headers.get("x-forwarded-for"), "real_ip": headers.get("x-real-ip"),
                "sni": None, "tls": None, "resumed": False, "client_cert": None}
        if isinstance(conn, ssl.SSLSocket):
            info["sni"] = getattr(conn, "tether_sni", None)
            info["tls"] = conn.version()
            info["resumed"] = conn.session_reused
            cert = conn.getpeercert()
            if cert:
                info["client_cert"] = dict(x[0] for x in cert["subject"]).get("commonName")
        return info

    def _http(self, conn, number: int, proxy) -> None:
        buf = b""
        req = 0
        while not self._stop.is_set():
            while b"\r\n\r\n" not in buf:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
            head, buf = buf.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            while len(buf) < length:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
            buf = buf[length:]
            req += 1
            info = self._describe(conn, number, req, proxy, path, headers)
            if headers.get("upgrade", "").lower() == "websocket":
                accept = base64.b64encode(hashlib.sha1(
                    (headers["sec-websocket-key"] + WS_GUID).encode()).digest()).decode()
                conn.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                              "Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept +
                              "\r\nX-Backend-Info: " + json.dumps(info) + "\r\n\r\n").encode())
                self._echo_frames(conn, buf)
                return
            body = json.dumps(info).encode()
            close = headers.get("connection", "").lower() == "close"
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
                         str(len(body)).encode() + (b"\r\nConnection: close" if close else b"") +
                         b"\r\n\r\n" + body)
            if close:
                return

    def _echo_frames(self, conn, buf: bytes) -> None:
        """Echoes client frames (masked) back unmasked until a close frame."""
        def need(n):
            nonlocal buf
            while len(buf) < n:
                data = conn.recv(65536)
                if not data:
                    raise ConnectionError("closed")
                buf += data
        try:
            while True:
                need(2)
                b0, b1 = buf[0], buf[1]
                length, offset = b1 & 0x7F, 2
                if length == 126:
                    need(4)
                    length, offset = struct.unpack("!H", buf[2:4])[0], 4
                elif length == 127:
                    need(10)
                    length, offset = struct.unpack("!Q", buf[2:10])[0], 10
                mask = b""
                if b1 & 0x80:
                    need(offset + 4)
                    mask, offset = buf[offset:offset + 4], offset + 4
                need(offset + length)
                payload = bytearray(buf[offset:offset + length])
                buf = buf[offset + length:]
                if mask:
                    for i in range(len(payload)):
                        payload[i] ^= mask[i % 4]
                n = len(payload)
                if n < 126:
                    header = bytes([b0, n])
                elif n < 65536:
                    header = bytes([b0, 126]) + struct.pack("!H", n)
                else:
                    header = bytes([b0, 127]) + struct.pack("!Q", n)
                conn.sendall(header + bytes(payload))
                if b0 & 0x0F == 0x8:
                    return
        except (ConnectionError, OSError):
            return
