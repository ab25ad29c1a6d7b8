"""The harness's starts on free ports when a port was taken meanwhile.

free_port()/free_ports() bind port 0 and release the port; the test then writes it in a
config and a child process binds it later. In between, another process can take it: on a busy
machine, most often as the source port of an outgoing connection (same ephemeral range). The
child then exits with "address in use". Tether and RedisServer start it again on new free
ports (harness.on_free_ports, PORT_TRIES starts in all). Each test here takes the chosen port
on purpose, the way that happens: a socket bound to it and connected (no SO_REUSEADDR).
"""

from __future__ import annotations

import socket
import time
import unittest

import harness
from harness import (HOST, PORT_TRIES, Backend, PortTaken, Tether, free_port, free_ports,
                     http_request, on_free_ports, tether_config)
from redis_fixture import REDIS, RedisServer, redis_commands


class Taken:
    """Holds `port` as the local port of a connected TCP socket (what an outgoing connection
    of another process does with a released port) until close()."""

    def __init__(self, port: int):
        self.listener = socket.create_server((HOST, 0))
        self.client = socket.socket()
        self.client.bind((HOST, port))
        self.client.connect(self.listener.getsockname())
        self.accepted, _ = self.listener.accept()

    def close(self) -> None:
        for s in (self.client, self.accepted, self.listener):
            s.close()

    def __enter__(self) -> Taken:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def running_children() -> set:
    return {p for p in harness._live if p.poll() is None}


class TakenPorts(unittest.TestCase):
    def setUp(self):
        self.backend = Backend("b1")
        self.addCleanup(self.backend.__exit__, None, None, None)

    def config(self, port: int, **overrides) -> str:
        return tether_config([("b1", self.backend.port)], port, **overrides)

    def test_tether_moves_a_taken_listen_port_and_reloads_follow(self):
        port = free_port()
        with Taken(port):
            t = Tether(self.config(port))
            self.addCleanup(t.close)
            self.assertNotEqual(t.port, port)
            self.assertEqual(t.moved, {port: t.port})
            self.assertEqual((t.ports, t.port), ([t.port], t.port))
            r = http_request(HOST, t.port, "GET", "/")
            self.assertEqual((r.status, r.header("X-Backend")), (200, "b1"))
            self.assertNotIn("address already in use", t.logs().lower())  # this start's log
            # A reload made with the first port is written with the moved one.
            t.reload(self.config(port, timeouts="idle: 7s"))
            deadline = time.monotonic() + 10
            while "(generation 2)" not in t.logs():
                self.assertLess(time.monotonic(), deadline, t.logs())
                time.sleep(0.02)
            with open(t.config_path) as f:
                text = f.read()
            self.assertIn(f"{HOST}:{t.port}", text)
            self.assertNotIn(f"{HOST}:{port}", text)
            self.assertNotIn("reload refused", t.logs())
            self.assertEqual(http_request(HOST, t.port, "GET", "/").status, 200)

    def test_a_taken_admin_port_moves_every_port_given(self):
        port, admin = free_ports(2)
        with Taken(admin):
            t = Tether(self.config(port, admin={"address": f"{HOST}:{admin}"}),
                       ports=[port, admin])
            self.addCleanup(t.close)
            self.assertEqual(t.moved, dict(zip([port, admin], t.ports)))
            self.assertTrue({port, admin}.isdisjoint(t.ports), t.ports)
            self.assertEqual(http_request(HOST, t.ports[1], "GET", "/status").status, 200)
            self.assertEqual(http_request(HOST, t.port, "GET", "/").status, 200)

    def test_starts_are_bounded_each_on_new_ports(self):
        before = running_children()
        tried = []

        def start(ports):  # every port it is given is taken
            tried.append(ports[0])
            with Taken(ports[0]):
                return Tether(self.config(ports[0]), tries=1)
        with self.assertRaises(PortTaken) as caught:
            on_free_ports(start, 1)
        self.assertEqual(len(set(tried)), PORT_TRIES, tried)
        self.assertIn("Address already in use", str(caught.exception))
        self.assertEqual(running_children(), before)  # each failed tether was stopped

    def test_other_start_failures_are_not_retried(self):
        port = free_port()
        with self.assertRaises(RuntimeError) as caught:
            Tether(self.config(port, upstream={"balance": "no_such_balance"}))
        self.assertNotIsInstance(caught.exception, PortTaken)

    @unittest.skipUnless(REDIS, "redis-server not installed")
    def test_redis_server_moves_a_taken_port(self):
        port = free_port()
        with Taken(port):
            redis = RedisServer(port)
            self.addCleanup(redis.close)
            self.assertNotEqual(redis.port, port)
            self.assertEqual(redis_commands(redis.port, [["PING"]]), ["PONG"])


if __name__ == "__main__":
    unittest.main()
