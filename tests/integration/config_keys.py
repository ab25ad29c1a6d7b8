"""The configuration keys tether's loader accepts, asked of the loader itself.

The loader answers a key it does not know with `unknown key 'K' in 'PATH' (valid: A, B, ...)`:
that list is the loader's own table of keys at PATH (src/config/loader.cpp passes the same table
to its walk), so probing every map with an unknown key discovers the whole schema without a
second copy of it. Each key found is then probed as a map, a list of maps and a map of named
entries (`upstreams`); what is none of those is a leaf. Paths read `upstreams.<name>.servers[].
weight`. Used by test_docs_configuration.py; runs `tether -t` (TETHER_BIN) on temp files.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile

PROBE = "__probe__"
_UNKNOWN = re.compile(r"unknown key '" + PROBE + r"'(?: in '([^']*)')? \(valid: ([^)]*)\)")


def _document(path: list, leaf) -> dict:
    """A config whose node at `path` is `leaf`; path items: "key", "[]" or "<name>"."""
    def build(rest):
        if not rest:
            return leaf
        head, tail = rest[0], rest[1:]
        if head == "[]":
            return [build(tail)]
        if head == "<name>":
            return {"n": build(tail)}
        return {head: build(tail)}
    return build(path)


def _valid_keys(tether: str, doc: dict, where: str) -> list[str] | None:
    """The loader's valid keys at `where` (its own path spelling), or None."""
    with tempfile.TemporaryDirectory(prefix="tether-keys-") as d:
        path = os.path.join(d, "probe.yaml")
        with open(path, "w") as f:
            json.dump(doc, f)  # JSON is YAML
        out = subprocess.run([tether, "-t", "-c", path], capture_output=True, text=True,
                             timeout=30, stdin=subprocess.DEVNULL)
    for m in _UNKNOWN.finditer(out.stdout + out.stderr):
        if (m.group(1) or "") == where:
            return [k.strip() for k in m.group(2).split(",")]
    return None


def _loader_path(path: list) -> str:
    """["upstreams", "<name>", "servers", "[]"] -> "upstreams.n.servers[0]"."""
    out = ""
    for item in path:
        if item == "[]":
            out += "[0]"
        else:
            out += ("." if out else "") + ("n" if item == "<name>" else item)
    return out


def _shapes(path: list) -> list[list]:
    """How a node at `path` may hold keys: a map, a list of maps, a map of named maps."""
    return [path, path + ["[]"], path + ["<name>"]]


def discover(tether: str) -> dict[str, str]:
    """Every key path the loader accepts -> "map" | "leaf"."""
    found: dict[str, str] = {}
    pending = [[]]
    while pending:
        path = pending.pop()
        keys = _valid_keys(tether, _document(path, {PROBE: 1}), _loader_path(path))
        for key in keys or []:
            child = path + [key]
            for shape in _shapes(child):
                sub = _valid_keys(tether, _document(shape, {PROBE: 1}), _loader_path(shape))
                if sub is not None:
                    found[_text(shape)] = "map"
                    pending.append(shape)
                    break
            else:
                found[_text(child)] = "leaf"
    return found


def _text(path: list) -> str:
    out = ""
    for item in path:
        out += item if item == "[]" else ("." if out else "") + item
    return out


if __name__ == "__main__":
    import sys
    for key, kind in sorted(discover(sys.argv[1] if len(sys.argv) > 1
                                     else os.environ["TETHER_BIN"]).items()):
        print(kind, key)
