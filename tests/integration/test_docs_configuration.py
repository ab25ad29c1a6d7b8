"""docs/configuration.md documents every key the loader accepts, and only those.

The keys come from the loader itself (config_keys.py: the loader's own "valid: ..." lists,
probed through `tether -t`), so a key added to src/config/loader.cpp without a row in the
reference fails here, and so does a row for a key that is gone. Each row also needs a default
and a meaning.
"""

from __future__ import annotations

import re
import unittest
from pathlib import Path

import config_keys
import harness

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|(.*)\|\s*$")


def documented() -> dict[str, list[str]]:
    """Key path -> the other cells of its table row."""
    rows = {}
    for line in DOC.read_text().splitlines():
        m = ROW.match(line)
        if m:
            rows[m.group(1)] = [c.strip() for c in m.group(2).split("|")]
    return rows


class ConfigurationReference(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.keys = config_keys.discover(harness._binary("TETHER_BIN"))
        cls.rows = documented()

    def test_discovery_sees_the_whole_schema(self):
        # A guard on the probe itself: a few keys at every depth and shape.
        for key in ("workers", "listen[].tls.certificates[].private_key",
                    "upstreams.<name>.servers[].weight", "limits.rate.burst",
                    "upstreams.<name>.health_check.expect_status"):
            self.assertIn(key, self.keys)
        self.assertGreater(len(self.keys), 60)

    def test_every_loader_key_is_documented(self):
        missing = sorted(k for k in self.keys if k not in self.rows)
        self.assertEqual(missing, [], f"add these keys to {DOC} (a row each, with default "
                                      "and meaning)")

    def test_every_documented_key_exists(self):
        stale = sorted(k for k in self.rows if k not in self.keys)
        self.assertEqual(stale, [], f"{DOC} documents keys the loader does not accept")

    def test_every_row_has_a_default_and_a_meaning(self):
        for key, cells in self.rows.items():
            with self.subTest(key):
                self.assertEqual(len(cells), 2, cells)
                self.assertTrue(cells[0], "empty default")
                self.assertGreater(len(cells[1]), 10, "no meaning")


if __name__ == "__main__":
    unittest.main()
