"""
Packaging: C{pip install .} into a fresh virtual environment gives a working
C{twistd relayd} (plugin discovery and its cache included) and C{relayd}
command. The environment sees the already installed dependencies, so nothing is
downloaded.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from tests.helpers import ROOT, Client, freePorts, poll, tempdir


def _copyTree(destination: str) -> str:
    source = os.path.join(destination, "src")
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(".git", "_trial_temp*", "*.egg-info", "build", "__pycache__", ".hypothesis"),
    )
    return source


class _Environment:
    """
    One fresh virtual environment with relayd installed, made on first use and
    removed when the test run ends (trial has no class fixtures).
    """

    def __init__(self) -> None:
        import atexit
        import tempfile

        self.base = tempfile.mkdtemp(prefix="relayd-venv-")
        atexit.register(shutil.rmtree, self.base, True)
        self.env = os.path.join(self.base, "venv")
        venv.EnvBuilder(system_site_packages=True, with_pip=False).create(self.env)
        source = _copyTree(self.base)
        self.bin = os.path.join(self.env, "bin")
        self.python = os.path.join(self.bin, "python")
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "--python",
                self.python,
                "install",
                "-q",
                "--no-deps",
                "--no-build-isolation",
                "--disable-pip-version-check",
                source,
            ],
            capture_output=True,
            text=True,
            cwd=self.base,
        )
        self.installOutput = result.stdout + result.stderr
        self.installStatus = result.returncode


_environment: _Environment | None = None


class FreshVirtualenvTests(TestCase):
    timeout = 240

    def setUp(self) -> None:
        global _environment
        if _environment is None:
            _environment = _Environment()
        environment = _environment
        self.base = environment.base
        self.env = environment.env
        self.bin = environment.bin
        self.python = environment.python
        self.installOutput = environment.installOutput
        self.installStatus = environment.installStatus

    def twistd(self, *args: str) -> list[str]:
        """
        The environment's twistd (Twisted itself comes from the base
        environment, so its script is not in the environment's bin).
        """
        return [self.python, "-c", "from twisted.scripts.twistd import run; run()", *args]

    def run_(self, *argv: str, cwd: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",) and not k.startswith("RELAYD_")}
        return subprocess.run(list(argv), capture_output=True, text=True, cwd=cwd or self.base, env=env, timeout=60)

    def test_installed(self) -> None:
        """
        pip installs relayd into the fresh environment without errors, and
        that environment imports relayd from its own site-packages.
        """
        self.assertEqual(self.installStatus, 0, self.installOutput)
        result = self.run_(self.python, "-c", "import relayd; print(relayd.__file__)")
        self.assertTrue(result.stdout.strip().startswith(self.env), result.stdout + result.stderr)

    def test_twistdHelpListsOptions(self) -> None:
        """
        C{twistd relayd --help} finds the plugin and lists relayd's options,
        and plugin discovery writes the plugin cache in the environment.
        """
        result = self.run_(*self.twistd("relayd", "--help"))
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("--config", result.stdout)
        self.assertIn("--entrypoints.web.address", result.stdout)
        listing = self.run_(*self.twistd("--help"))
        self.assertIn("relayd", listing.stdout)
        caches = []
        for root, dirs, files in os.walk(self.env):
            if root.endswith(os.path.join("twisted", "plugins")) and "relayd_plugin.py" in files:
                caches.append("dropin.cache" in files)
        self.assertEqual(caches, [True])

    def test_relaydCommand(self) -> None:
        """
        The relayd console script runs its offline commands.
        """
        result = self.run_(os.path.join(self.bin, "relayd"), "version")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertTrue(result.stdout.startswith("relayd "))

    @defer.inlineCallbacks
    def test_twistdServes(self):
        """
        The installed C{twistd -n relayd --config FILE} starts and serves.
        """
        directory = tempdir(self)
        (port,) = freePorts(1)
        with open(os.path.join(directory, "relayd.toml"), "w") as f:
            f.write(f'[entryPoints.web]\naddress = "127.0.0.1:{port}"\n[ping]\nentryPoint = "web"\n')
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        process = subprocess.Popen(
            self.twistd("-n", "--pidfile", "", "relayd", "--config", "relayd.toml"),
            cwd=directory,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def stop() -> None:
            process.terminate()
            process.wait(15)

        self.addCleanup(stop)
        client = Client()
        self.addCleanup(client.close)

        def ping():
            return client.get(f"http://127.0.0.1:{port}/ping").addCallback(lambda r: r[1] == b"OK")

        self.assertTrue((yield poll(ping, timeout=30)))

    def test_dashboardAssets(self) -> None:
        """
        The installed package carries the dashboard's files, and the sdist
        built from the tree carries them too.
        """
        script = "from relayd.api.dashboard import loadAssets; print(' '.join(sorted(loadAssets())))"
        result = self.run_(self.python, "-c", script)
        self.assertEqual(result.returncode, 0, result.stderr)
        names = result.stdout.split()
        for path in ("/", "/index.html", "/app.js", "/style.css"):
            self.assertIn(path, names)
        source = os.path.join(self.base, "src")
        sdist = os.path.join(self.base, "sdist")
        built = self.run_(self.python, "setup.py", "-q", "sdist", "-d", sdist, cwd=source)
        self.assertEqual(built.returncode, 0, built.stderr)
        import tarfile

        (archive,) = os.listdir(sdist)
        with tarfile.open(os.path.join(sdist, archive)) as tar:
            members = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
        for name in ("index.html", "app.js", "style.css"):
            self.assertIn(f"relayd/api/webui/{name}", members)
