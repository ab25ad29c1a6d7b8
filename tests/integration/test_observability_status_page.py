"""The live status page (GET / on the admin address) in real headless Chromium (Debian package
`chromium`), driven through the Chrome DevTools Protocol from the Python stdlib (the harness's
WebSocket client talks to Chromium's DevTools endpoint).

Checks: the page renders one table per upstream with the servers of the running tether; its
numbers (requests, 5xx, request rate, tunnels, Engine.IO sessions) follow live traffic without
a reload; clicking the drain button (real mouse events at the button's position) drains the
server, as /status and the routing of new clients show, and enable brings it back.

Chromium runs as root with --no-sandbox, a fresh --user-data-dir in a temp dir and no network
but 127.0.0.1; it is stopped by PID. Skipped without chromium, except under CI=true.
"""

import json
import os
import tempfile
import time
import unittest
import urllib.request

from harness import HOST, HttpConnection, LoggedProcess, WebSocket, http_request
from obs_common import Load, ObsTether, require_tool, wait_for

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-extensions",
                  "--disable-dev-shm-usage", "--window-size=1400,1000",
                  "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0"]

# The page's state as the user sees it: per upstream, per server row, the text of each cell.
READ_PAGE = """JSON.stringify(Object.fromEntries(
  Array.from(document.querySelectorAll('section[data-upstream]')).map(s => [s.dataset.upstream,
    Object.fromEntries(Array.from(s.querySelectorAll('tr[data-server]')).map(tr => [
      tr.dataset.server,
      Object.assign({class: tr.className, button: tr.querySelector('button').textContent},
        Object.fromEntries(Array.from(tr.querySelectorAll('td[data-k]'))
          .map(td => [td.dataset.k, td.textContent])))]))])))"""


class Chromium(LoggedProcess):
    """A headless Chromium and one DevTools session on its first page."""

    def __init__(self):
        directory = tempfile.mkdtemp(prefix="tether-chromium-")
        super().__init__([require_tool("chromium"), *CHROMIUM_FLAGS,
                          f"--user-data-dir={os.path.join(directory, 'profile')}", "about:blank"],
                         "chromium", directory=directory)
        self.ws = None
        self.next_id = 0
        try:
            self._connect()
        except BaseException:
            self.close()
            raise

    def _connect(self):
        active = os.path.join(self.dir, "profile", "DevToolsActivePort")

        def port_file():
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited: {self.logs()}")
            if not os.path.exists(active):
                return None
            with open(active) as f:
                lines = f.read().split("\n")
            return int(lines[0]) if len(lines) >= 2 and lines[0].isdigit() else None
        port = wait_for(port_file, 60, 0.1, "DevToolsActivePort")

        def page():
            with urllib.request.urlopen(f"http://{HOST}:{port}/json/list", timeout=5) as r:
                pages = [t for t in json.load(r) if t["type"] == "page"]
            return pages[0] if pages else None
        target = wait_for(page, 20, 0.1, "a page target")
        path = target["webSocketDebuggerUrl"].split(f":{port}", 1)[1]
        self.ws = WebSocket.connect(HOST, port, path, timeout=30)

    def call(self, method: str, timeout: float = 30, **params) -> dict:
        """Sends one DevTools command and returns its result (events are skipped)."""
        self.next_id += 1
        self.ws.send_text(json.dumps({"id": self.next_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            msg = json.loads(self.ws.recv_text(max(0.1, deadline - time.monotonic())))
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:60]}...: {result['exceptionDetails']}")
        return result["result"].get("value")

    def click(self, selector: str):
        """A real left click (mouse moved, pressed, released) at the centre of `selector`."""
        box = json.loads(self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
            " return JSON.stringify({x: r.x + r.width / 2, y: r.y + r.height / 2}); })()"))
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=box["x"], y=box["y"],
                      button="left", clickCount=1)

    def close(self):
        if self.ws:
            self.ws.abort()
        super().close()


class StatusPageTest(unittest.TestCase):
    def setUp(self):
        require_tool("chromium")
        self.obs = ObsTether(workers=2)
        self.addCleanup(self.obs.close)
        self.browser = Chromium()
        self.addCleanup(self.browser.close)
        self.browser.call("Page.enable")
        self.browser.call("Page.navigate", url=f"http://{HOST}:{self.obs.ports['admin']}/")
        self.page = lambda: json.loads(self.browser.evaluate(READ_PAGE))
        wait_for(lambda: len(self.page()) == 3, 20, 0.2, "the page shows 3 upstreams")
        # Set once; still there at the end = the page never reloaded.
        self.browser.evaluate("window.__tether_test_marker = 'no reload'")
        self.addCleanup(self.assert_not_reloaded)

    def assert_not_reloaded(self):
        self.assertEqual(self.browser.evaluate("window.__tether_test_marker"), "no reload")

    def wait_page(self, predicate, what, timeout=10):
        last = []

        def check():
            last[:] = [self.page()]
            return predicate(last[0])
        try:
            return wait_for(check, timeout, 0.2, what)
        except TimeoutError:
            raise AssertionError(f"{what}: page shows {json.dumps(last[0])}") from None

    def test_renders_the_servers_of_the_running_tether(self):
        page, obs = self.page(), self.obs
        self.assertEqual(set(page), {"web", "ip", "io"})
        s1, s2 = obs.backends
        self.assertEqual(set(page["web"]), {"s1", "s2"})
        self.assertEqual(set(page["io"]), {"s1"})
        self.assertEqual(page["web"]["s1"]["address"], s1.address)
        self.assertEqual(page["ip"]["s2"]["address"], s2.address)
        for up in page.values():
            for row in up.values():
                self.assertEqual((row["state"], row["class"], row["button"]), ("up", "up", "drain"))
                self.assertEqual(row["weight"], "1")
        self.assertEqual(page["io"]["s1"]["sessions"], "0/0")
        self.assertEqual(page["web"]["s1"]["sessions"], "-")
        title = self.browser.evaluate("document.querySelector('#upstream-web h2').textContent")
        self.assertIn("affinity cookie", title)

    def test_numbers_follow_live_traffic(self):
        obs, web = self.obs, self.obs.ports["web"]
        for _ in range(20):
            self.assertEqual(http_request(HOST, web, "GET", "/").status, 200)
        for _ in range(4):
            self.assertEqual(http_request(HOST, web, "GET", "/status?code=502").status, 502)
        # 24 answers over s1 and s2 (round_robin per worker), 4 of them 502.
        def total(p, key):
            return sum(int(p["web"][s][key]) for s in ("s1", "s2"))
        self.wait_page(lambda p: total(p, "requests") == 24 and total(p, "errors") == 4,
                       "24 requests, 4 errors")
        page = self.page()
        self.assertTrue(all(int(page["web"][s]["requests"]) > 0 for s in ("s1", "s2")))
        self.assertEqual(page["ip"]["s1"]["requests"], "0")
        # Tunnels and Engine.IO sessions while they are open.
        sockets = [WebSocket.connect(HOST, web, "/chat") for _ in range(3)]
        for ws in sockets:
            self.addCleanup(ws.abort)
        polls = []
        for i in range(2):
            conn = HttpConnection(HOST, obs.ports["io"], timeout=20)
            self.addCleanup(conn.close)
            conn.send_request("GET", f"/sleep?ms=6000&EIO=4&transport=polling&sid=page{i}")
            polls.append(conn)
        self.wait_page(lambda p: sum(int(p["web"][s]["tunnels"]) for s in ("s1", "s2")) == 3
                       and p["io"]["s1"]["sessions"] == "2/0", "3 tunnels and 2 polling sessions")
        for ws in sockets:
            ws.close()
        for conn in polls:
            conn.read_response(timeout=20)
        self.wait_page(lambda p: sum(int(p["web"][s]["tunnels"]) for s in ("s1", "s2")) == 0
                       and p["io"]["s1"]["sessions"] == "0/0", "tunnels closed, polls answered")
        # Rates: under steady load both rows show a request rate above zero.
        with Load(web, threads=2) as load:
            self.wait_page(lambda p: all(p["web"][s]["req_rate"] not in ("-", "0.0")
                                         for s in ("s1", "s2")), "a request rate", 15)
        self.assertEqual(load.errors, [])
        # ... and the page's counts match /status exactly once traffic stopped.
        st = {s["name"]: s for s in obs.status()["upstreams"]["web"]["servers"]}
        self.wait_page(lambda p: all(p["web"][n]["requests"] == str(st[n]["requests"])
                                     for n in ("s1", "s2")), "the page matches /status")
        self.wait_page(lambda p: all(p["web"][s]["req_rate"] == "0.0" for s in ("s1", "s2")),
                       "the rate falls to 0 after the load")

    def test_drain_button_drains_and_enable_restores(self):
        obs, web = self.obs, self.obs.ports["web"]

        def server_status(name):
            return next(s for s in obs.status()["upstreams"]["web"]["servers"]
                        if s["name"] == name)
        self.browser.click('section[data-upstream="web"] tr[data-server="s2"] button.action')
        wait_for(lambda: server_status("s2")["state"] == "draining", 5, 0.1, "s2 draining")
        self.assertTrue(server_status("s2")["draining"])
        self.assertEqual(server_status("s1")["state"], "up")
        self.wait_page(lambda p: p["web"]["s2"]["class"] == "draining"
                       and p["web"]["s2"]["button"] == "enable", "s2 shown draining")
        self.assertEqual(self.page()["ip"]["s2"]["state"], "up", "only web/s2 was drained")
        # A drained server takes no new client: 10 new clients all go to s1.
        before = obs.backends[1].stats()["requests"]
        answers = [http_request(HOST, web, "GET", "/").body for _ in range(10)]
        self.assertEqual(set(answers), {b"hello from s1\n"})
        self.assertEqual(obs.backends[1].stats()["requests"], before + 1)  # our own /stats
        self.browser.click('section[data-upstream="web"] tr[data-server="s2"] button.action')
        wait_for(lambda: server_status("s2")["state"] == "up", 5, 0.1, "s2 up again")
        self.wait_page(lambda p: p["web"]["s2"]["class"] == "up"
                       and p["web"]["s2"]["button"] == "drain", "s2 shown up")
        answers = [http_request(HOST, web, "GET", "/").body for _ in range(10)]
        self.assertIn(b"hello from s2\n", answers)


if __name__ == "__main__":
    unittest.main()
