"""
Tests for L{relayd.config.loader}: parsing documents, finding the
configuration file, and choosing one static source as Traefik does (file, then
flags, then environment variables, else relayd's embedded default).
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from relayd.config.errors import ConfigError, ConfigErrors
from relayd.config.loader import (
    EMBEDDED_DEFAULT,
    StaticSource,
    effective,
    envItems,
    findConfigFile,
    loadStatic,
    parseDocument,
    readDocument,
)
from relayd.config.schema import decode
from relayd.config.static import EntryPoint, StaticConfig
from relayd.config.types import FrozenMap


def makeDirectory(case: SynchronousTestCase) -> str:
    path = case.mktemp()
    os.makedirs(path)
    return path


def write(directory: str, name: str, text: str | bytes) -> str:
    path = os.path.join(directory, name)
    mode = "wb" if isinstance(text, bytes) else "w"
    with open(path, mode) as f:
        f.write(text)
    return path


class ParseDocumentTests(SynchronousTestCase):
    """
    Tests for L{parseDocument}.
    """

    def test_formats(self) -> None:
        """
        TOML, YAML and JSON parse to the same tree; the suffix picks the format.
        """
        expected = {"entryPoints": {"web": {"address": ":80"}}}
        self.assertEqual(parseDocument('[entryPoints.web]\naddress = ":80"\n', "a.toml"), expected)
        self.assertEqual(parseDocument('entryPoints:\n  web:\n    address: ":80"\n', "a.yaml"), expected)
        self.assertEqual(parseDocument('entryPoints:\n  web:\n    address: ":80"\n', "a.YML"), expected)
        self.assertEqual(parseDocument('{"entryPoints": {"web": {"address": ":80"}}}', "dir/a.json"), expected)

    def test_emptyYAML(self) -> None:
        """
        An empty YAML document is None; YAML merge keys still work.
        """
        self.assertIsNone(parseDocument("", "a.yaml"))
        self.assertEqual(
            parseDocument("base: &b {x: 1}\nd:\n  <<: *b\n  x: 2\n", "a.yaml"),
            {"base": {"x": 1}, "d": {"x": 2}},
        )

    def assertSyntaxError(self, text: str, name: str, message: str) -> None:
        with self.assertRaises(ConfigError) as caught:
            parseDocument(text, name)
        self.assertEqual(caught.exception.path, "")
        self.assertEqual(caught.exception.source, name)
        self.assertEqual(caught.exception.message, message)

    def test_tomlSyntax(self) -> None:
        """
        TOML syntax errors give the line and column, with the file name as source.
        """
        self.assertSyntaxError("[a]\nb = \n", "conf/relayd.toml", "invalid TOML: Invalid value (at line 2, column 5)")
        self.assertSyntaxError(
            "[a]\nb = 1\nb = 2\n", "relayd.toml", "invalid TOML: Cannot overwrite a value (at line 3, column 6)"
        )

    def test_yamlSyntax(self) -> None:
        """
        YAML syntax errors give the line and column, with the file name as source.
        """
        self.assertSyntaxError(
            "a:\n  b: 1\n c: 2\n",
            "relayd.yaml",
            "invalid YAML (line 3, column 2): expected <block end>, but found '<block mapping start>'",
        )
        self.assertSyntaxError("a: b: c\n", "x.yml", "invalid YAML (line 1, column 5): mapping values are not allowed here")

    def test_yamlBadCharacter(self) -> None:
        """
        A control character in YAML is reported with its line and column.
        """
        self.assertSyntaxError(
            "a: 1\nb: \x07\n",
            "x.yaml",
            "invalid YAML (line 2, column 4): unacceptable character #x0007: special characters are not allowed",
        )

    def test_yamlDuplicateKey(self) -> None:
        """
        A YAML key written twice in one mapping is an error naming both lines.
        """
        self.assertSyntaxError(
            "a: 1\nb:\n  c: 1\n  c: 2\n", "x.yaml", "invalid YAML (line 4, column 3): key 'c' is set twice (first at line 3)"
        )

    def test_yamlUnsafeTag(self) -> None:
        """
        YAML tags that would build Python objects are refused.
        """
        with self.assertRaises(ConfigError) as caught:
            parseDocument("a: !!python/object/apply:os.system [echo]\n", "x.yaml")
        self.assertIn("invalid YAML (line 1, column 4): could not determine a constructor", caught.exception.message)

    def test_jsonSyntax(self) -> None:
        """
        JSON syntax errors give the line and column, with the file name as source.
        """
        self.assertSyntaxError('{\n"a": }', "x.json", "invalid JSON (line 2, column 6): Expecting value")

    def test_unknownSuffix(self) -> None:
        """
        A file that is not TOML, YAML or JSON is refused, naming the accepted suffixes.
        """
        self.assertSyntaxError("a=1", "relayd.ini", "unknown file type '.ini'; use .toml, .yaml, .yml or .json")
        self.assertSyntaxError("a=1", "relayd", "unknown file type ''; use .toml, .yaml, .yml or .json")


class ReadDocumentTests(SynchronousTestCase):
    """
    Tests for L{readDocument}.
    """

    def test_reads(self) -> None:
        """
        A file is read and parsed according to its suffix.
        """
        path = write(makeDirectory(self), "a.toml", "x = 1\n")
        self.assertEqual(readDocument(path), {"x": 1})

    def test_missing(self) -> None:
        """
        A missing file fails with the operating system's reason and the path as source.
        """
        path = os.path.join(makeDirectory(self), "nope.toml")
        with self.assertRaises(ConfigError) as caught:
            readDocument(path)
        self.assertEqual(caught.exception, ConfigError("", "cannot read: No such file or directory", path))

    def test_directory(self) -> None:
        """
        A directory cannot be read as a file.
        """
        path = makeDirectory(self)
        with self.assertRaises(ConfigError) as caught:
            readDocument(path)
        self.assertEqual(caught.exception.message, "cannot read: Is a directory")

    def test_notUTF8(self) -> None:
        """
        A file that is not UTF-8 fails, naming the bad byte.
        """
        path = write(makeDirectory(self), "a.toml", b"x = '\xff'\n")
        with self.assertRaises(ConfigError) as caught:
            readDocument(path)
        self.assertEqual(caught.exception.source, path)
        self.assertIn("not UTF-8 text: 'utf-8' codec can't decode byte 0xff in position 5", caught.exception.message)

    def test_syntaxErrorNamesFile(self) -> None:
        """
        Syntax errors carry the file's path as source.
        """
        path = write(makeDirectory(self), "a.yaml", "a: [\n")
        with self.assertRaises(ConfigError) as caught:
            readDocument(path)
        self.assertEqual(caught.exception.source, path)
        self.assertTrue(str(caught.exception).startswith(f"{path}: invalid YAML (line 2, column 1)"))


class FindConfigFileTests(SynchronousTestCase):
    """
    Tests for L{findConfigFile}.
    """

    def setUp(self) -> None:
        self.cwd = makeDirectory(self)
        self.system = makeDirectory(self)

    def test_none(self) -> None:
        """
        Without any relayd file, there is no configuration file.
        """
        write(self.cwd, "traefik.toml", "")
        self.assertIsNone(findConfigFile(self.cwd, self.system))

    def test_order(self) -> None:
        """
        In one directory, relayd.toml comes before relayd.yaml, which comes before relayd.yml.
        """
        yml = write(self.cwd, "relayd.yml", "")
        self.assertEqual(findConfigFile(self.cwd, self.system), yml)
        yaml = write(self.cwd, "relayd.yaml", "")
        self.assertEqual(findConfigFile(self.cwd, self.system), yaml)
        toml = write(self.cwd, "relayd.toml", "")
        self.assertEqual(findConfigFile(self.cwd, self.system), toml)

    def test_workingDirectoryFirst(self) -> None:
        """
        The working directory is searched before the system directory.
        """
        system = write(self.system, "relayd.toml", "")
        self.assertEqual(findConfigFile(self.cwd, self.system), system)
        local = write(self.cwd, "relayd.yml", "")
        self.assertEqual(findConfigFile(self.cwd, self.system), local)

    def test_directoriesSkipped(self) -> None:
        """
        A directory with a configuration file's name is not a configuration file.
        """
        os.makedirs(os.path.join(self.cwd, "relayd.toml"))
        self.assertIsNone(findConfigFile(self.cwd, self.system))


class EnvItemsTests(SynchronousTestCase):
    """
    Tests for L{envItems}.
    """

    def test_prefixes(self) -> None:
        """
        RELAYD_ and TRAEFIK_ variables become lower-case dotted keys.
        """
        self.assertEqual(
            sorted(envItems({"RELAYD_ENTRYPOINTS_WEB_ADDRESS": ":80", "TRAEFIK_API_INSECURE": "true"})),
            [("api.insecure", "true"), ("entrypoints.web.address", ":80")],
        )

    def test_relaydWins(self) -> None:
        """
        RELAYD_ wins over TRAEFIK_ for the same key.
        """
        environ = {"TRAEFIK_LOG_LEVEL": "DEBUG", "RELAYD_LOG_LEVEL": "INFO"}
        self.assertEqual(envItems(environ), [("log.level", "INFO")])

    def test_unrelatedIgnored(self) -> None:
        """
        Variables with a prefix but no static section after it, or no prefix, are ignored.
        """
        environ = {"RELAYD_FOO": "1", "RELAYD_CONFIG": "x", "TRAEFIK_VERSION": "3", "PATH": "/bin", "RELAYD": "x"}
        self.assertEqual(envItems(environ), [])

    def test_ignoredSectionsKept(self) -> None:
        """
        Variables for sections relayd ignores are kept, so that loading warns about them.
        """
        self.assertEqual(envItems({"TRAEFIK_TRACING_OTLP": "true"}), [("tracing.otlp", "true")])

    def test_caseOfPrefix(self) -> None:
        """
        The prefix matches in any case.
        """
        self.assertEqual(envItems({"relayd_api": "true"}), [("api", "true")])


class LoadStaticTests(SynchronousTestCase):
    """
    Tests for L{loadStatic}: one source wins.
    """

    def setUp(self) -> None:
        self.cwd = makeDirectory(self)
        self.system = makeDirectory(self)

    def load(self, configFile=None, flags=(), environ=None):
        return loadStatic(configFile, list(flags), environ or {}, self.cwd, systemDir=self.system)

    def test_embeddedDefault(self) -> None:
        """
        With no file, flag or variable, the embedded default runs entrypoint web on 127.0.0.1:8080 with ping on it.
        """
        loaded = self.load(environ={"RELAYD_FOO": "x", "HOME": "/root"})
        self.assertEqual(loaded.source, StaticSource("default"))
        self.assertEqual(loaded.warnings, ())
        config = loaded.config
        self.assertEqual(list(config.entryPoints), ["web"])
        self.assertEqual(config.entryPoints["web"].address, "127.0.0.1:8080")
        self.assertEqual(config.ping.entryPoint, "web")
        self.assertEqual(config.log.level, "INFO")
        self.assertIsNone(config.api)
        self.assertEqual(config, decode(StaticConfig, parseDocument(EMBEDDED_DEFAULT, "x.toml"))[0])

    def test_fileFound(self) -> None:
        """
        A relayd file in the working directory is used, with its path as source.
        """
        path = write(self.cwd, "relayd.yaml", "entryPoints:\n  web:\n    address: ':9000'\n")
        loaded = self.load()
        self.assertEqual(loaded.source, StaticSource("file", path))
        self.assertEqual(loaded.config.entryPoints["web"].address, ":9000")

    def test_fileInSystemDirectory(self) -> None:
        """
        Without one in the working directory, the system directory's file is used.
        """
        path = write(self.system, "relayd.toml", '[api]\n')
        self.assertEqual(self.load().source, StaticSource("file", path))

    def test_configFileArgument(self) -> None:
        """
        A named configuration file wins over the one that would be found.
        """
        write(self.cwd, "relayd.toml", '[entryPoints.web]\naddress = ":1"\n')
        named = write(makeDirectory(self), "other.json", '{"entryPoints": {"x": {"address": ":2"}}}')
        loaded = self.load(configFile=named)
        self.assertEqual(loaded.source.path, named)
        self.assertEqual(list(loaded.config.entryPoints), ["x"])

    def test_emptyFile(self) -> None:
        """
        An empty file is an empty configuration: one http entrypoint on :80.
        """
        write(self.cwd, "relayd.yaml", "")
        loaded = self.load()
        self.assertEqual(loaded.config.entryPoints, FrozenMap({"http": EntryPoint(address=":80")}))

    def test_fileWinsOverFlagsAndEnv(self) -> None:
        """
        With a file, flags and variables are ignored and a warning lists them.
        """
        path = write(self.cwd, "relayd.toml", '[entryPoints.web]\naddress = ":80"\n')
        loaded = self.load(flags=[("api.insecure", "true")], environ={"RELAYD_LOG_LEVEL": "DEBUG"})
        self.assertEqual(loaded.source.kind, "file")
        self.assertIsNone(loaded.config.api)
        self.assertEqual(loaded.config.log.level, "ERROR")
        self.assertEqual(
            loaded.warnings,
            (
                f"the configuration file {path} is used, so these settings are ignored "
                "(one source only, as in Traefik): --api.insecure, log.level (environment)",
            ),
        )

    def test_flagsWinOverEnv(self) -> None:
        """
        Without a file, flags are used, variables are ignored, and a warning says so.
        """
        loaded = self.load(
            flags=[("entrypoints.web.address", ":81"), ("api", "true")], environ={"TRAEFIK_LOG_LEVEL": "DEBUG"}
        )
        self.assertEqual(loaded.source, StaticSource("flags"))
        self.assertEqual(loaded.config.entryPoints["web"].address, ":81")
        self.assertIsNotNone(loaded.config.api)
        self.assertEqual(loaded.config.log.level, "ERROR")
        self.assertEqual(
            loaded.warnings,
            (
                "command-line flags are used, so the RELAYD_/TRAEFIK_ environment "
                "variables are ignored (one source only, as in Traefik)",
            ),
        )

    def test_flagsAlone(self) -> None:
        """
        Flags alone give no warning; a bare section flag enables it with defaults.
        """
        loaded = self.load(flags=[("ping", "true")])
        self.assertEqual(loaded.warnings, ())
        self.assertEqual(loaded.config.ping.entryPoint, "traefik")
        self.assertEqual(loaded.config.entryPoints["traefik"].address, ":8080")

    def test_envAlone(self) -> None:
        """
        Variables alone are used, with both prefixes, RELAYD_ winning.
        """
        loaded = self.load(
            environ={
                "TRAEFIK_ENTRYPOINTS_WEB_ADDRESS": ":82",
                "TRAEFIK_LOG_LEVEL": "DEBUG",
                "RELAYD_LOG_LEVEL": "warn",
                "RELAYD_ENTRYPOINTS_WEB_FORWARDEDHEADERS_TRUSTEDIPS": "10.0.0.0/8, 127.0.0.1",
                "RELAYD_ENTRYPOINTS_WEB_HTTP_TLS_DOMAINS_0_MAIN": "example.com",
                "RELAYD_FOO": "ignored",
            }
        )
        self.assertEqual(loaded.source, StaticSource("env"))
        self.assertEqual(loaded.warnings, ())
        web = loaded.config.entryPoints["web"]
        self.assertEqual(web.address, ":82")
        self.assertEqual(web.forwardedHeaders.trustedIPs, ("10.0.0.0/8", "127.0.0.1"))
        self.assertEqual(web.http.tls.domains[0].main, "example.com")
        self.assertEqual(loaded.config.log.level, "WARN")

    def test_envIgnoredSectionWarns(self) -> None:
        """
        A variable for an ignored section gives the same warning as the file key.
        """
        loaded = self.load(environ={"TRAEFIK_TRACING_SERVICENAME": "x", "TRAEFIK_API": "true"})
        self.assertEqual(loaded.warnings, ("tracing: relayd does not implement tracing; this section is ignored",))

    def test_fileWarnings(self) -> None:
        """
        Warnings for ignored sections in the file are returned.
        """
        write(self.cwd, "relayd.yaml", "tracing:\n  otlp: {}\n")
        self.assertEqual(self.load().warnings, ("tracing: relayd does not implement tracing; this section is ignored",))

    def test_fileErrorsNameFile(self) -> None:
        """
        Errors in the file carry its path as source, including implied-entrypoint errors.
        """
        path = write(self.cwd, "relayd.toml", '[entryPoints.web]\nadress = ":80"\n')
        with self.assertRaises(ConfigErrors) as caught:
            self.load()
        self.assertEqual(
            [str(e) for e in caught.exception.errors],
            [
                f'{path}: entryPoints.web.adress: unknown key, did you mean "address"?',
                f"{path}: entryPoints.web.address: required key is missing",
            ],
        )
        write(self.cwd, "relayd.toml", '[ping]\nentryPoint = "web"\n')
        with self.assertRaises(ConfigError) as caught:
            self.load()
        self.assertEqual(
            str(caught.exception), f'{path}: ping.entryPoint: unknown entrypoint "web" (defined: http)'
        )

    def test_fileSyntaxError(self) -> None:
        """
        A syntax error in the file names the file and the line.
        """
        path = write(self.cwd, "relayd.yaml", "api:\n  insecure: [\n")
        with self.assertRaises(ConfigError) as caught:
            self.load()
        self.assertEqual(caught.exception.source, path)
        self.assertIn("invalid YAML (line 3, column 1)", caught.exception.message)

    def test_missingNamedFile(self) -> None:
        """
        A named configuration file that does not exist is an error, not a fallback.
        """
        path = os.path.join(self.cwd, "missing.toml")
        with self.assertRaises(ConfigError) as caught:
            self.load(configFile=path)
        self.assertEqual(caught.exception.source, path)

    def test_flagErrorsNameSource(self) -> None:
        """
        Errors in flags and variables name the kind of source and the key path.
        """
        with self.assertRaises(ConfigError) as caught:
            self.load(flags=[("entrypoints.web.adress", ":80")])
        self.assertEqual(
            str(caught.exception),
            'command-line flags: entryPoints.web.adress: unknown key, did you mean "address"?',
        )
        with self.assertRaises(ConfigError) as caught:
            self.load(environ={"RELAYD_LOG_LEVEL": "LOUD"})
        self.assertEqual(caught.exception.source, "environment variables")
        self.assertEqual(caught.exception.path, "log.level")
        with self.assertRaises(ConfigError) as caught:
            self.load(flags=[("ping.entrypoint", "web")])
        self.assertEqual(
            str(caught.exception),
            'command-line flags: ping.entryPoint: unknown entrypoint "web" (defined: http)',
        )


class EffectiveTests(SynchronousTestCase):
    """
    Tests for L{effective}: Traefik's implied entrypoints.
    """

    def effective(self, raw: dict) -> StaticConfig:
        return effective(decode(StaticConfig, raw)[0])

    def test_impliedHTTP(self) -> None:
        """
        With no entrypoint, an entrypoint http on :80 is created.
        """
        self.assertEqual(self.effective({}).entryPoints, FrozenMap({"http": EntryPoint(address=":80")}))

    def test_noImpliedHTTPWithEntryPoints(self) -> None:
        """
        With an entrypoint defined, no http entrypoint is added.
        """
        self.assertEqual(list(self.effective({"entryPoints": {"web": {"address": ":8000"}}}).entryPoints), ["web"])

    def test_impliedTraefik(self) -> None:
        """
        The API in insecure mode, ping, Prometheus and the insecure REST provider bring a traefik entrypoint on :8080.
        """
        for raw in (
            {"api": {"insecure": True}},
            {"ping": {}},
            {"metrics": {"prometheus": {}}},
            {"providers": {"rest": {"insecure": True}}},
        ):
            with self.subTest(raw=raw):
                entryPoints = self.effective(dict(raw, entryPoints={"web": {"address": ":80"}})).entryPoints
                self.assertEqual(list(entryPoints), ["web", "traefik"])
                self.assertEqual(entryPoints["traefik"], EntryPoint(address=":8080"))

    def test_bothImplied(self) -> None:
        """
        With no entrypoint and ping on, both http and traefik are created.
        """
        self.assertEqual(list(self.effective({"ping": {}}).entryPoints), ["http", "traefik"])

    def test_noImpliedTraefik(self) -> None:
        """
        A secure API, manual routing, another entrypoint or an existing traefik entrypoint add nothing.
        """
        web = {"web": {"address": ":80"}}
        for raw in (
            {"api": {}},
            {"ping": {"manualRouting": True}},
            {"ping": {"entryPoint": "web"}},
            {"metrics": {"prometheus": {"manualRouting": True}}},
            {"providers": {"rest": {}}},
        ):
            with self.subTest(raw=raw):
                self.assertEqual(list(self.effective(dict(raw, entryPoints=web)).entryPoints), ["web"])
        mine = self.effective({"api": {"insecure": True}, "entryPoints": {"traefik": {"address": ":9999"}}})
        self.assertEqual(mine.entryPoints["traefik"].address, ":9999")

    def test_unknownEntryPoints(self) -> None:
        """
        Ping and Prometheus on an undefined entrypoint fail, every problem reported.
        """
        raw = {
            "entryPoints": {"web": {"address": ":80"}},
            "ping": {"entryPoint": "nope"},
            "metrics": {"prometheus": {"entryPoint": "gone"}},
        }
        with self.assertRaises(ConfigErrors) as caught:
            self.effective(raw)
        self.assertEqual(
            [(e.path, e.message) for e in caught.exception.errors],
            [
                ("ping.entryPoint", 'unknown entrypoint "nope" (defined: web)'),
                ("metrics.prometheus.entryPoint", 'unknown entrypoint "gone" (defined: web)'),
            ],
        )

    def test_manualRoutingNeedsNoEntryPoint(self) -> None:
        """
        With manual routing, the entrypoint named by ping or Prometheus is not checked.
        """
        config = self.effective(
            {"ping": {"entryPoint": "nope", "manualRouting": True}, "metrics": {"prometheus": {"entryPoint": "x", "manualRouting": True}}}
        )
        self.assertEqual(list(config.entryPoints), ["http"])
