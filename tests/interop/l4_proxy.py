"""A round-robin TCP (layer 4) proxy for the replica tests, like a cloud L4 balancer or a
Kubernetes Service in front of several tether replicas (stdlib only).

Listens on 127.0.0.1 (free port); TCP connection k goes to target k % len(targets), so a
client's successive connections (its polling requests, its WebSocket upgrade) land on
successive replicas. Bytes are copied both ways unchanged; a half-close is passed on.

Threading: one thread runs a selectors loop; start() / stop() are called from the test thread.
Bounded: at most `max_buffer` bytes are queued per direction, stop() joins within a timeout.
"""

import selectors
import socket
import threading


class _End:
    """One socket of a proxied pair; `out` holds what must still be written to it."""

    __slots__ = ("sock", "peer", "out", "eof", "shut", "closed")

    def __init__(self, sock):
        self.sock = sock
        self.peer = None
        self.out = bytearray()
        self.eof = False    # this socket said EOF
        self.shut = False   # we sent SHUT_WR on this socket
        self.closed = False


class RoundRobinProxy:
    def __init__(self, targets, max_buffer=1 << 20):
        self.targets = list(targets)  # [(host, port)]
        self.max_buffer = max_buffer
        self.counts = [0] * len(self.targets)
        self.connect_failures = 0
        self.lock = threading.Lock()
        self.sel = selectors.DefaultSelector()
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(1024)
        self.lsock.setblocking(False)
        self.port = self.lsock.getsockname()[1]
        self.sel.register(self.lsock, selectors.EVENT_READ, None)
        self._next = 0
        self._ends = set()  # every open socket end, also those not registered right now
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self, timeout=5.0):
        self._stopping.set()
        self._thread.join(timeout)
        for end in list(self._ends):
            end.sock.close()
        self._ends.clear()
        self.lsock.close()
        self.sel.close()

    def connections(self):
        with self.lock:
            return list(self.counts)

    # ---- loop ------------------------------------------------------------------------

    def _loop(self):
        while not self._stopping.is_set():
            for key, mask in self.sel.select(0.1):
                if key.data is None:
                    self._accept()
                    continue
                end = key.data
                if end.closed:
                    continue
                try:
                    if mask & selectors.EVENT_WRITE:
                        self._write(end)
                    if mask & selectors.EVENT_READ and not end.closed:
                        self._read(end)
                except OSError:
                    self._close(end)

    def _accept(self):
        for _ in range(64):
            try:
                csock, _ = self.lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            i = self._next % len(self.targets)
            self._next += 1
            try:
                usock = socket.create_connection(self.targets[i], timeout=2)
            except OSError:
                self.connect_failures += 1
                csock.close()
                continue
            with self.lock:
                self.counts[i] += 1
            for s in (csock, usock):
                s.setblocking(False)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            a, b = _End(csock), _End(usock)
            a.peer, b.peer = b, a
            self._ends.update((a, b))
            self._update(a)
            self._update(b)

    def _read(self, end):
        data = end.sock.recv(65536)
        if data:
            end.peer.out += data
        else:
            end.eof = True
            if not end.peer.out:
                self._shut(end.peer)
        self._update(end)
        self._update(end.peer)

    def _write(self, end):
        if end.out:
            n = end.sock.send(end.out)
            del end.out[:n]
        if not end.out and end.peer.eof:
            self._shut(end)
        self._update(end)
        self._update(end.peer)

    def _shut(self, end):
        if not end.shut:
            end.shut = True
            try:
                end.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def _update(self, end):
        if end.closed:
            return
        if end.eof and end.peer.eof and not end.out and not end.peer.out:
            self._close(end)
            return
        events = 0
        if not end.eof and len(end.peer.out) < self.max_buffer:
            events |= selectors.EVENT_READ
        if end.out:
            events |= selectors.EVENT_WRITE
        registered = end.sock in self.sel.get_map()
        if events and registered:
            self.sel.modify(end.sock, events, end)
        elif events:
            self.sel.register(end.sock, events, end)
        elif registered:
            self.sel.unregister(end.sock)

    def _close(self, end):
        for e in (end, end.peer):
            if e.closed:
                continue
            e.closed = True
            if e.sock in self.sel.get_map():
                self.sel.unregister(e.sock)
            e.sock.close()
            self._ends.discard(e)
