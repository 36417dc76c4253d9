"""
Tests for the relayd command: version, check's and explain's output and exit
statuses, in-process and through the real command line.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

from relayd import __version__
from relayd.cli import main
from tests.helpers import ROOT, tempdir, writeFile


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
        self.assertIn("error: relayd.toml:2: entryPoints.web.address: invalid address 'nope'", out)

    def test_dynamicErrors(self) -> None:
        """
        A disabled router is printed with its file, line and key path, exit status 1.
        """
        writeFile("relayd.toml", '[entryPoints.web]\naddress = ":0"\n[providers.file]\nfilename = "dyn.toml"\n')
        writeFile(
            "dyn.toml",
            '[http.routers.r]\nrule = "Host(`a`"\nservice = "s"\n'
            '[http.services.s.loadBalancer]\n[[http.services.s.loadBalancer.servers]]\nurl = "http://127.0.0.1:1"\n',
        )
        status, out = self.run_("check")
        self.assertEqual(status, 1)
        self.assertIn("error: dyn.toml:1: http.routers.r: invalid rule 'Host(`a`'", out)
        self.assertIn("1 error(s)", out)

    def test_flags(self) -> None:
        """
        check takes static configuration flags like twistd does.
        """
        status, out = self.run_("check", "--entrypoints.web.address=127.0.0.1:0", "--ping")
        self.assertEqual((status, out), (0, "flags: OK\n"))

    def test_yamlLines(self) -> None:
        """
        Decoding errors of a YAML dynamic file name the file, the line of the key and its path.
        """
        writeFile("relayd.toml", '[entryPoints.web]\naddress = ":0"\n[providers.file]\nfilename = "dyn.yml"\n')
        writeFile("dyn.yml", YAML_BAD)
        status, out = self.run_("check")
        self.assertEqual(status, 1)
        self.assertEqual(
            out.splitlines(),
            [
                "error: dyn.yml:6: http.routers.web.priority: expected an integer, got the string 'abc'",
                "error: dyn.yml:12: http.services.app.loadBalancer.servers[1].url: invalid server URL '12':"
                " expected scheme://host[:port], with scheme http, https, h2c, ws or wss",
                "relayd.toml: 2 error(s)",
            ],
        )

    def test_runtimeErrorLines(self) -> None:
        """
        A router whose service does not exist is reported at the line of its YAML key.
        """
        writeFile("relayd.toml", '[entryPoints.web]\naddress = ":0"\n[providers.file]\nfilename = "dyn.yml"\n')
        writeFile("dyn.yml", "# routers\nhttp:\n  routers:\n    x:\n      rule: Host(`a`)\n      service: nope\n")
        status, out = self.run_("check")
        self.assertEqual(status, 1)
        self.assertIn('error: dyn.yml:4: http.routers.x: the service "nope@file" does not exist\n', out)

    def test_directoryTOML(self) -> None:
        """
        With a directory of files, the error names the file that defines the object and the line of its table.
        """
        os.mkdir("conf")
        writeFile("relayd.toml", '[entryPoints.web]\naddress = ":0"\n[providers.file]\ndirectory = "conf"\n')
        writeFile("conf/a.toml", '[http.services.s.loadBalancer]\n[[http.services.s.loadBalancer.servers]]\nurl = "http://127.0.0.1:1"\n')
        writeFile("conf/b.toml", '# b\n\n[http.routers."my.router"]\nrule = "Host(`a`)"\nservice = "t"\n')
        writeFile("conf/c.toml", '[http.routers.r]\nrule = "Host(`a`)"\nservice = "s"\n[http.middlewares.m.headers]\nnope = 1\n')
        status, out = self.run_("check")
        self.assertEqual(status, 1)
        self.assertIn("error: conf/c.toml:5: http.middlewares.m.headers.nope: unknown key", out)
        self.assertIn('error: conf/b.toml:3: http.routers.my.router: the service "t@file" does not exist\n', out)

    def test_shadowWarning(self) -> None:
        """
        A router that never matches is a warning in check's output; the exit status stays 0.
        """
        writeFile("relayd.toml", '[entryPoints.web]\naddress = ":0"\n[providers.file]\nfilename = "dyn.yml"\n')
        writeFile("dyn.yml", DYNAMIC)
        status, out = self.run_("check")
        self.assertEqual(
            (status, out),
            (
                0,
                'warning: dyn.yml:17: http.routers.shadowed: never matches: router "catchall@file" (priority 10)'
                " matches every request it would, and is evaluated first\nrelayd.toml: OK\n",
            ),
        )

    def test_usageError(self) -> None:
        """
        An unknown option is a usage error with exit status 2.
        """
        status, out = self.run_("check", "--nope")
        self.assertEqual(status, 2)
        self.assertTrue(out.startswith("error: unrecognized arguments: --nope\nusage: relayd"), out)


YAML_BAD = """\
http:
  routers:
    web:
      rule: Host(`a`)
      service: app
      priority: abc
  services:
    app:
      loadBalancer:
        servers:
          - url: http://127.0.0.1:9001
          - url: 12
"""

DYNAMIC = """\
http:
  routers:
    admin:
      rule: Host(`admin.example`) && PathPrefix(`/api`)
      priority: 50
      service: app
      middlewares: [auth]
    catchall:
      rule: PathPrefix(`/`)
      priority: 10
      service: app
    secure:
      rule: Host(`a.example`)
      tls: {}
      priority: 100
      service: app
    shadowed:
      rule: Host(`z.example`) && Method(`GET`)
      priority: 5
      service: app
  middlewares:
    auth:
      basicAuth:
        users: ["u:$apr1$H6uskkkW$IgXLP6ewTrSuBkTrqE8wj/"]
  services:
    app:
      loadBalancer:
        servers:
          - url: http://127.0.0.1:9001
          - url: http://127.0.0.1:9002
"""


class ExplainCommandTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = tempdir(self)
        cwd = os.getcwd()
        os.chdir(self.dir)
        self.addCleanup(os.chdir, cwd)
        writeFile(
            "relayd.toml",
            '[entryPoints.web]\naddress = ":0"\n[entryPoints.web.http]\nmiddlewares = ["hdr@file"]\n'
            '[providers.file]\nfilename = "dyn.yml"\n',
        )
        hdr = '  middlewares:\n    hdr:\n      headers:\n        customRequestHeaders: {X-A: "1"}\n'
        writeFile("dyn.yml", DYNAMIC.replace("  middlewares:\n", hdr))

    def run_(self, *argv: str) -> tuple[int, str]:
        out = io.StringIO()
        return main(list(argv), out), out.getvalue()

    def test_match(self) -> None:
        """
        A matching request prints the skipped routers with reasons, then the router, middlewares, service and server; exit 0.
        """
        status, out = self.run_("explain", "--entrypoint", "web", "GET", "http://admin.example/api/x")
        self.assertEqual(status, 0)
        self.assertEqual(
            out,
            "GET http://admin.example/api/x on entrypoint web\n"
            "  skipped secure@file (priority 100): Host(`a.example`)\n"
            "    TLS only\n"
            "matched admin@file (priority 50): Host(`admin.example`) && PathPrefix(`/api`)\n"
            "  middlewares: hdr@file, auth@file\n"
            "  service: app@file\n"
            "  server: http://127.0.0.1:9001 (next in weighted round robin)\n",
        )

    def test_noMatch(self) -> None:
        """
        A request no router takes prints why each was skipped, with exit status 1.
        """
        status, out = self.run_("explain", "--entrypoint", "web", "-H", "X-B: 2", "POST", "https://z.example/a")
        self.assertEqual(status, 1)
        self.assertIn('    Host(`a.example`) does not match host "z.example"\n', out)
        self.assertIn("    plain HTTP only (the request is over TLS)\n", out)
        self.assertTrue(out.endswith("no router matches (404)\n"), out)

    def test_json(self) -> None:
        """
        --json prints the explanation as JSON.
        """
        status, out = self.run_("explain", "--json", "--entrypoint", "web", "GET", "http://x.example/")
        self.assertEqual(status, 0)
        explanation = json.loads(out)
        self.assertEqual(explanation["match"]["router"], "catchall@file")
        self.assertEqual(explanation["request"]["host"], "x.example")
        self.assertEqual([s["router"] for s in explanation["skipped"]], ["secure@file", "admin@file"])

    def test_usageErrors(self) -> None:
        """
        A missing entrypoint, an unknown one, a bad URL, method or header exit with status 2 and a clear message.
        """
        cases = [
            (("GET", "http://a/"), "error: the following arguments are required: --entrypoint/--entryPoint\n"),
            (("--entrypoint", "nope", "GET", "http://a/"), 'error: unknown entrypoint "nope" (defined: web)\n'),
            (("--entrypoint", "web", "GET", "ftp://a/"), "error: invalid URL 'ftp://a/': expected http://host/path or https://host/path\n"),
            (("--entrypoint", "web", "GET", "/a"), "error: invalid URL '/a': a path needs a Host header (or give an absolute URL)\n"),
            (("--entrypoint", "web", "G T", "http://a/"), "error: invalid method 'G T'\n"),
            (("--entrypoint", "web", "-H", "nocolon", "GET", "http://a/"), "error: --header wants NAME:VALUE, got 'nocolon'\n"),
            (("--entrypoint", "web", "GET", "http://a/%zz"), "error: invalid URL 'http://a/%zz': invalid percent-encoding in the request path\n"),
        ]
        for argv, message in cases:
            status, out = self.run_("explain", *argv)
            self.assertEqual(status, 2, out)
            self.assertTrue(out.startswith(message), out)

    def test_staticConfigError(self) -> None:
        """
        A static configuration that does not load exits with status 2 after its errors.
        """
        writeFile("relayd.toml", '[entryPoints.web]\naddress = "nope"\n')
        status, out = self.run_("explain", "--entrypoint", "web", "GET", "http://a/")
        self.assertEqual(status, 2)
        self.assertTrue(out.startswith("error: relayd.toml:2: entryPoints.web.address: invalid address 'nope'"), out)

    def test_flagsAndOriginForm(self) -> None:
        """
        explain takes static flags instead of a file, and a path with a Host header.
        """
        os.remove("relayd.toml")
        status, out = self.run_(
            "explain", "--entrypoints.web.address=:0", "--providers.file.filename=dyn.yml",
            "--entrypoint", "web", "-H", "Host: admin.example", "GET", "/api",
        )
        self.assertEqual(status, 0, out)
        self.assertIn("matched admin@file", out)


class ConsoleScriptTests(SynchronousTestCase):
    def test_subprocess(self) -> None:
        """
        The real command line: check fails with status 1 on a broken file, explain exits 1 on no match.
        """
        directory = tempdir(self)
        writeFile(os.path.join(directory, "relayd.toml"), '[entryPoints.web]\naddress = ":0"\n[providers.file]\nfilename = "dyn.yml"\n')
        writeFile(os.path.join(directory, "dyn.yml"), "http:\n  routers:\n    x:\n      rule: Host(`a`)\n      service: nope\n")
        env = {**os.environ, "PYTHONPATH": ROOT}
        command = [sys.executable, "-m", "relayd.cli"]
        result = subprocess.run(command + ["check"], cwd=directory, env=env, capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertEqual(
            result.stdout,
            'error: dyn.yml:3: http.routers.x: the service "nope@file" does not exist\nrelayd.toml: 1 error(s)\n',
        )
        result = subprocess.run(
            command + ["explain", "--entrypoint", "web", "GET", "http://a/"],
            cwd=directory, env=env, capture_output=True, text=True, timeout=60,
        )
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn("no router matches (404)", result.stdout)


class DocumentationTests(SynchronousTestCase):
    def test_explainExample(self) -> None:
        """
        docs/cli.rst's explain example prints exactly what the page shows, with the page's dynamic file.
        """
        import shlex

        from tests.test_examples import _literalBlock

        with open(os.path.join(ROOT, "docs", "cli.rst"), encoding="utf-8") as f:
            page = f.read()
        directory = tempdir(self)
        writeFile(os.path.join(directory, "shop.yml"), _literalBlock(page, "this dynamic file (``shop.yml``"))
        writeFile(
            os.path.join(directory, "relayd.toml"),
            '[entryPoints.web]\naddress = ":80"\n[providers.file]\nfilename = "shop.yml"\n',
        )
        command, *expected = _literalBlock(page, "is explained so").splitlines()
        self.assertTrue(command.startswith("$ relayd "), command)
        cwd = os.getcwd()
        os.chdir(directory)
        self.addCleanup(os.chdir, cwd)
        out = io.StringIO()
        self.assertEqual(main(shlex.split(command)[2:], out), 0, out.getvalue())
        self.assertEqual(out.getvalue().splitlines(), expected)
        check = io.StringIO()
        self.assertEqual((main(["check"], check), check.getvalue()), (0, "relayd.toml: OK\n"))


class LocatorTests(SynchronousTestCase):
    def test_toml(self) -> None:
        """
        TOML key lines: tables, arrays of tables by index, quoted keys, dotted keys, multi-line strings skipped.
        """
        from relayd.config.loader import keyLines, lineOf

        text = (
            "# comment\n"
            "[http.routers.'a.b']\n"
            "rule = '''\n"
            "[not.a.table]\n"
            "'''\n"
            "tls.options = \"x\"\n"
            "[[http.services.s.loadBalancer.servers]]\n"
            "url = \"http://a\"\n"
            "[[http.services.s.loadBalancer.servers]]\n"
            "url = \"http://b\"\n"
        )
        lines = keyLines(text, "d.toml")
        self.assertNotIn("not.a.table", lines)
        self.assertEqual(lineOf(lines, "http.routers.a.b.rule"), 3)
        self.assertEqual(lineOf(lines, "http.routers.a.b.tls.options"), 6)
        self.assertEqual(lineOf(lines, "http.routers.a.b.service"), 2)
        self.assertEqual(lineOf(lines, "http.services.s.loadBalancer.servers[1].url"), 10)
        self.assertEqual(lineOf(lines, "http.services.s.loadBalancer.servers[0]"), 7)
        self.assertIsNone(lineOf(lines, "tcp.routers.x"))

    def test_yamlAndJSON(self) -> None:
        """
        YAML and JSON key lines come from the parser's marks, sequence items by index.
        """
        from relayd.config.loader import keyLines, lineOf

        yamlLines = keyLines("http:\n  services:\n    s:\n      weighted:\n        services:\n          - name: a\n          - name: b\n", "d.yml")
        self.assertEqual(lineOf(yamlLines, "http.services.s.weighted.services[1].name"), 7)
        jsonLines = keyLines('{\n  "http": {\n    "routers": {\n      "r": {"rule": "x"}\n    }\n  }\n}\n', "d.json")
        self.assertEqual(lineOf(jsonLines, "http.routers.r.rule"), 4)
        self.assertEqual(keyLines("a: [", "broken.yml"), {})
