#!/usr/bin/env python3
"""Minimal WebSocket check for the demo (stdlib only): connects to a ws:// URL,
sends 'whoami' and 'hello', prints what comes back, closes cleanly.
Its helpers (read_exact, frame, read_frame) are imported by tests/integration
(tls_backend.py): keep this file standalone and stdlib only."""
import base64, os, socket, struct, sys, urllib.parse


def frame(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def read_exact(sock: socket.socket, n: int) -> bytes:
    """Exactly n bytes from sock; ConnectionError when the peer closes first."""
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("connection closed")
        data += chunk
    return data


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    b0, b1 = read_exact(sock, 2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", read_exact(sock, 2))[0]
    elif n == 127:
        n = struct.unpack("!Q", read_exact(sock, 8))[0]
    return b0 & 0x0F, read_exact(sock, n)


def main() -> int:
    url = urllib.parse.urlparse(sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8080/")
    sock = socket.create_connection((url.hostname, url.port or 80), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    path = (url.path or "/") + (("?" + url.query) if url.query else "")
    sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {url.netloc}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += read_exact(sock, 1)
    print(head.decode().splitlines()[0])
    for text in ("whoami", "hello"):
        sock.sendall(frame(1, text.encode()))
        print(f"sent {text!r}, got {read_frame(sock)[1].decode()!r}")
    sock.sendall(frame(8, struct.pack("!H", 1000)))
    print("closed with", struct.unpack("!H", read_frame(sock)[1][:2])[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
