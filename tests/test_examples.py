"""
Every example configuration (examples/ and the README) loads and checks clean,
so the documentation cannot rot.
"""

from __future__ import annotations

import io
import os
import re

from twisted.trial.unittest import SynchronousTestCase

from relayd.cli import main
from relayd.config.loader import EMBEDDED_DEFAULT, parseDocument
from tests.helpers import ROOT, tempdir

EXAMPLES = os.path.join(ROOT, "examples")


def _literalBlock(text: str, marker: str) -> str:
    """
    The indented literal block that follows the paragraph containing C{marker}.
    """
    start = text.index(marker)
    start = text.index("::\n", start) + 3
    lines = []
    for line in text[start:].splitlines()[1:]:
        if line and not line.startswith("    "):
            break
        lines.append(line[4:])
    return "\n".join(lines).strip() + "\n"


class ExamplesTests(SynchronousTestCase):
    def check(self, *argv: str) -> str:
        out = io.StringIO()
        status = main(["check", *argv], out)
        self.assertEqual(status, 0, out.getvalue())
        return out.getvalue()

    def test_everyExampleChecksClean(self) -> None:
        """
        Each examples/ directory's static file, and the dynamic files it names,
        load with no error and no warning.
        """
        checked = []
        for name in sorted(os.listdir(EXAMPLES)):
            directory = os.path.join(EXAMPLES, name)
            for candidate in ("relayd.toml", "relayd.yaml"):
                path = os.path.join(directory, candidate)
                if os.path.exists(path):
                    cwd = os.getcwd()
                    os.chdir(directory)
                    self.addCleanup(os.chdir, cwd)
                    out = self.check("--config", path)
                    os.chdir(cwd)
                    self.assertNotIn("warning", out)
                    checked.append(name)
        self.assertEqual(checked, ["directory", "quickstart"])

    def test_readmeMinimalConfiguration(self) -> None:
        """
        The README's minimal static and dynamic configurations check clean.
        """
        with open(os.path.join(ROOT, "README.rst"), encoding="utf-8") as f:
            readme = f.read()
        directory = tempdir(self)
        with open(os.path.join(directory, "relayd.toml"), "w") as f:
            f.write(_literalBlock(readme, "``relayd.toml`` (static, read once)"))
        with open(os.path.join(directory, "dynamic.toml"), "w") as f:
            f.write(_literalBlock(readme, "``dynamic.toml`` (hot-reloaded"))
        cwd = os.getcwd()
        os.chdir(directory)
        self.addCleanup(os.chdir, cwd)
        out = self.check("--config", "relayd.toml")
        self.assertIn("OK", out)

    def test_readmeEmbeddedDefault(self) -> None:
        """
        The README documents exactly the embedded default relayd starts on.
        """
        with open(os.path.join(ROOT, "README.rst"), encoding="utf-8") as f:
            readme = f.read()
        documented = _literalBlock(readme, "it starts on the **embedded")
        self.assertEqual(parseDocument(documented, "x.toml"), parseDocument(EMBEDDED_DEFAULT, "x.toml"))

    def test_readmeCommandsMatchCI(self) -> None:
        """
        .ci/run runs exactly the README's test command.
        """
        with open(os.path.join(ROOT, "README.rst"), encoding="utf-8") as f:
            readme = f.read()
        command = _literalBlock(readme, "Install everything the tests need").strip()
        with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as f:
            ci = f.read()
        self.assertIn(command, ci.splitlines())
        self.assertTrue(re.search(r"twistd -n relayd$", _literalBlock(readme, "Install relayd and run it").strip()))
