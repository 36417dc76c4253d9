"""
Tests for the relayd command: version, and check's output and exit status.
"""

from __future__ import annotations

import io
import os

from twisted.trial.unittest import SynchronousTestCase

from relayd import __version__
from relayd.cli import main
from tests.helpers import tempdir, writeFile


class CheckTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = tempdir(self)
        cwd = os.getcwd()
        os.chdir(self.dir)
        self.addCleanup(os.chdir, cwd)

    def run_(self, *argv: str) -> tuple[int, str]:
        out = io.StringIO()
        return main(list(argv), out), out.getvalue()

    def test_version(self) -> None:
        """
        relayd version prints the version.
        """
        self.assertEqual(self.run_("version"), (0, f"relayd {__version__}\n"))

    def test_staticError(self) -> None:
        """
        A static error is printed with its key path and the exit status is 1.
        """
        writeFile("relayd.toml", '[entryPoints.web]\naddress = "nope"\n')
        status, out = self.run_("check")
        self.assertEqual(status, 1)
        self.assertIn("error: relayd.toml: entryPoints.web.address: invalid address 'nope'", out.replace(self.dir + "/", ""))

    def test_dynamicErrors(self) -> None:
        """
        Dynamic file errors and disabled routers are printed, exit status 1.
        """
        writeFile("relayd.toml", '[entryPoints.web]\naddress = ":0"\n[providers.file]\nfilename = "dyn.toml"\n')
        writeFile(
            "dyn.toml",
            '[http.routers.r]\nrule = "Host(`a`"\nservice = "s"\n'
            '[http.services.s.loadBalancer]\n[[http.services.s.loadBalancer.servers]]\nurl = "http://127.0.0.1:1"\n',
        )
        status, out = self.run_("check")
        self.assertEqual(status, 1)
        self.assertIn("error: router r@file: invalid rule 'Host(`a`'", out)
        self.assertIn("1 error(s)", out)

    def test_flags(self) -> None:
        """
        check takes static configuration flags like twistd does.
        """
        status, out = self.run_("check", "--entrypoints.web.address=127.0.0.1:0", "--ping")
        self.assertEqual((status, out), (0, "flags: OK\n"))
