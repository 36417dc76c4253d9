"""
Tests for L{relayd.config.middlewares}: keys, defaults and checks of the HTTP
and TCP middleware models.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.trial.unittest import SynchronousTestCase

from relayd.config.errors import ConfigError, ConfigErrors
from relayd.config.middlewares import (
    HTTP_MIDDLEWARE_KINDS,
    TCP_MIDDLEWARE_KINDS,
    AddPrefix,
    ClientTLS,
    Compress,
    ErrorPage,
    HTTPMiddleware,
    IPAllowList,
    IPStrategy,
    Redis,
    SourceCriterion,
    StripPrefix,
    TCPIPAllowList,
    TCPMiddleware,
    TLSClientCertificateInfo,
    TLSClientCertificateIssuerDNInfo,
    TLSClientCertificateSubjectDNInfo,
    parseStatusRanges,
)
from relayd.config.schema import decode, flatToTree
from relayd.config.types import Duration, FrozenMap

PATH = "http.middlewares.m"
TCP_PATH = "tcp.middlewares.m"
MIB = 1024 * 1024

# For every kind: the smallest valid table, and every key of the decoded model
# with the value it must have (Traefik's defaults for the keys not given).
DEFAULTS: dict[str, tuple[Any, dict[str, Any]]] = {
    "addPrefix": ({"prefix": "/api"}, {"prefix": "/api"}),
    "basicAuth": (
        {"users": ["test:$apr1$H6uskkkW$IgXLP6ewTrSuBkTrqE8wj/"]},
        {
            "users": ("test:$apr1$H6uskkkW$IgXLP6ewTrSuBkTrqE8wj/",),
            "usersFile": "",
            "realm": "traefik",
            "removeHeader": False,
            "headerField": "",
        },
    ),
    "buffering": (
        {},
        {
            "maxRequestBodyBytes": 0,
            "memRequestBodyBytes": MIB,
            "maxResponseBodyBytes": 0,
            "memResponseBodyBytes": MIB,
            "retryExpression": "",
        },
    ),
    "chain": ({"middlewares": ["a", "b@file"]}, {"middlewares": ("a", "b@file")}),
    "circuitBreaker": (
        {"expression": "NetworkErrorRatio() > 0.5"},
        {
            "expression": "NetworkErrorRatio() > 0.5",
            "checkPeriod": Duration(0.1),
            "fallbackDuration": Duration(10),
            "recoveryDuration": Duration(10),
            "responseCode": 503,
        },
    ),
    "compress": (
        {},
        {
            "excludedContentTypes": (),
            "includedContentTypes": (),
            "minResponseBodyBytes": 1024,
            "encodings": ("gzip", "br", "zstd"),
            "defaultEncoding": "",
        },
    ),
    "contentType": ({}, {"autoDetect": None}),
    "digestAuth": (
        {"users": ["test:traefik:a2688e031edb4be6a3797f3882655c05"]},
        {
            "users": ("test:traefik:a2688e031edb4be6a3797f3882655c05",),
            "usersFile": "",
            "removeHeader": False,
            "realm": "traefik",
            "headerField": "",
        },
    ),
    "errors": (
        {"service": "error-pages"},
        {
            "status": (),
            "statusRewrites": FrozenMap(),
            "service": "error-pages",
            "query": "",
            "errorRequestHeaders": None,
        },
    ),
    "forwardAuth": (
        {"address": "https://auth.example.com/verify"},
        {
            "address": "https://auth.example.com/verify",
            "tls": None,
            "trustForwardHeader": None,
            "authResponseHeaders": (),
            "authResponseHeadersRegex": "",
            "authRequestHeaders": (),
            "maxResponseBodySize": -1,
            "addAuthCookiesToResponse": (),
            "headerField": "",
            "forwardBody": False,
            "maxBodySize": -1,
            "preserveLocationHeader": False,
            "preserveRequestMethod": False,
        },
    ),
    "grpcWeb": ({}, {"allowOrigins": ()}),
    "headers": (
        {"frameDeny": True},
        {
            "customRequestHeaders": FrozenMap(),
            "customResponseHeaders": FrozenMap(),
            "accessControlAllowCredentials": False,
            "accessControlAllowHeaders": (),
            "accessControlAllowMethods": (),
            "accessControlAllowOriginList": (),
            "accessControlAllowOriginListRegex": (),
            "accessControlExposeHeaders": (),
            "accessControlMaxAge": None,
            "addVaryHeader": False,
            "allowedHosts": (),
            "hostsProxyHeaders": (),
            "sslProxyHeaders": FrozenMap(),
            "stsSeconds": None,
            "stsIncludeSubdomains": False,
            "stsPreload": False,
            "forceSTSHeader": False,
            "frameDeny": True,
            "customFrameOptionsValue": "",
            "contentTypeNosniff": False,
            "browserXssFilter": False,
            "customBrowserXSSValue": "",
            "contentSecurityPolicy": "",
            "contentSecurityPolicyReportOnly": "",
            "publicKey": "",
            "referrerPolicy": "",
            "permissionsPolicy": "",
            "isDevelopment": False,
        },
    ),
    "ipAllowList": (
        {"sourceRange": ["10.0.0.0/8", "::1"]},
        {"sourceRange": ("10.0.0.0/8", "::1"), "ipStrategy": None, "rejectStatusCode": 403},
    ),
    "ipWhiteList": (
        {"sourceRange": ["192.168.1.7"]},
        {"sourceRange": ("192.168.1.7",), "ipStrategy": None, "rejectStatusCode": 403},
    ),
    "inFlightReq": ({"amount": 10}, {"amount": 10, "sourceCriterion": None}),
    "passTLSClientCert": ({}, {"pem": False, "info": None}),
    "rateLimit": (
        {},
        {
            "average": 0,
            "period": Duration(1),
            "burst": 1,
            "sourceCriterion": None,
            "redis": None,
        },
    ),
    "redirectRegex": ({}, {"regex": "", "replacement": "", "permanent": False}),
    "redirectScheme": (
        {"scheme": "https"},
        {"scheme": "https", "port": "", "permanent": False},
    ),
    "replacePath": ({"path": "/foo"}, {"path": "/foo"}),
    "replacePathRegex": ({}, {"regex": "", "replacement": ""}),
    "retry": ({"attempts": 4}, {"attempts": 4, "initialInterval": Duration(0)}),
    "stripPrefix": ({}, {"prefixes": (), "forceSlash": None}),
    "stripPrefixRegex": ({}, {"regex": ()}),
}


def decodeHTTP(raw: Any) -> tuple[HTTPMiddleware, list[str]]:
    return decode(HTTPMiddleware, raw, PATH)


def fields(value: Any) -> dict[str, Any]:
    return attrs.asdict(value, recurse=False)


class FailureAssertions:
    """
    Helpers to check that decoding fails with one exact error.
    """

    def assertFails(
        self: Any,
        raw: Any,
        path: str,
        message: str,
        cls: type = HTTPMiddleware,
        root: str = PATH,
    ) -> None:
        error = self.assertRaises(ConfigError, decode, cls, raw, root)
        if isinstance(error, ConfigErrors):
            self.fail(f"expected one error, got:\n{error}")
        self.assertEqual(error.path, path)
        self.assertEqual(str(error), f"{path}: {message}")


class HTTPMiddlewareDefaultsTests(SynchronousTestCase):
    def test_everyKindHasTraefikKeysAndDefaults(self) -> None:
        """
        Every HTTP kind decodes from a minimal table into a model whose keys and
        default values are exactly Traefik v3's.
        """
        self.assertEqual(set(DEFAULTS), set(HTTP_MIDDLEWARE_KINDS))
        for kind, (raw, expected) in DEFAULTS.items():
            middleware, warnings = decodeHTTP({kind: raw})
            self.assertEqual(middleware.kind(), kind)
            self.assertEqual(fields(middleware.config()), expected, kind)
            self.assertEqual(warnings, [], kind)

    def test_kindsConstants(self) -> None:
        """
        The kind constants list the supported kinds in model order, without the
        unsupported plugin kind.
        """
        self.assertEqual(len(HTTP_MIDDLEWARE_KINDS), 24)
        self.assertEqual(HTTP_MIDDLEWARE_KINDS[0], "addPrefix")
        self.assertNotIn("plugin", HTTP_MIDDLEWARE_KINDS)
        self.assertEqual(TCP_MIDDLEWARE_KINDS, ("ipAllowList", "ipWhiteList", "inFlightConn"))

    def test_kindAndConfig(self) -> None:
        """
        kind() names the one kind set and config() returns its model.
        """
        middleware, _ = decodeHTTP({"stripPrefix": {"prefixes": ["/a", "/b"]}})
        self.assertEqual(middleware.kind(), "stripPrefix")
        self.assertEqual(middleware.config(), StripPrefix(prefixes=("/a", "/b")))

    def test_kindOfEmptyTable(self) -> None:
        """
        kind() raises ValueError on a directly built table with no kind set.
        """
        self.assertRaises(ValueError, HTTPMiddleware().kind)

    def test_ipWhiteListSharesTheAllowListModel(self) -> None:
        """
        The deprecated ipWhiteList kind decodes into the IPAllowList model.
        """
        middleware, _ = decodeHTTP({"ipWhiteList": {"sourceRange": ["10.0.0.1"]}})
        self.assertEqual(middleware.config(), IPAllowList(sourceRange=("10.0.0.1",)))

    def test_sectionEnabledByTrue(self) -> None:
        """
        A kind whose keys are all optional is enabled with its defaults by true.
        """
        middleware, _ = decodeHTTP({"compress": True})
        self.assertEqual(middleware.config(), Compress())

    def test_fullHeaders(self) -> None:
        """
        Every headers key decodes, including the CORS and security ones.
        """
        raw = {
            "customRequestHeaders": {"X-Script-Name": "test", "X-Remove": ""},
            "customResponseHeaders": {"X-Custom-Response-Header": "value"},
            "accessControlAllowCredentials": True,
            "accessControlAllowHeaders": ["Content-Type"],
            "accessControlAllowMethods": ["GET", "OPTIONS", "PUT"],
            "accessControlAllowOriginList": ["https://foo.example"],
            "accessControlAllowOriginListRegex": [r"^https://([a-z]+)\.example$"],
            "accessControlExposeHeaders": ["X-Exposed"],
            "accessControlMaxAge": 100,
            "addVaryHeader": True,
            "allowedHosts": ["example.com"],
            "hostsProxyHeaders": ["X-Forwarded-Host"],
            "sslProxyHeaders": {"X-Forwarded-Proto": "https"},
            "stsSeconds": 315360000,
            "stsIncludeSubdomains": True,
            "stsPreload": True,
            "forceSTSHeader": True,
            "frameDeny": True,
            "customFrameOptionsValue": "SAMEORIGIN",
            "contentTypeNosniff": True,
            "browserXssFilter": True,
            "customBrowserXSSValue": "1; mode=block",
            "contentSecurityPolicy": "default-src 'self'",
            "contentSecurityPolicyReportOnly": "default-src 'none'",
            "publicKey": "pin-sha256=\"base64+primary==\"; max-age=5184000",
            "referrerPolicy": "same-origin",
            "permissionsPolicy": "camera=()",
            "isDevelopment": True,
        }
        middleware, _ = decodeHTTP({"headers": raw})
        headers = middleware.config()
        self.assertEqual(
            headers.customRequestHeaders, {"X-Script-Name": "test", "X-Remove": ""}
        )
        self.assertIsInstance(headers.customRequestHeaders, FrozenMap)
        self.assertEqual(headers.accessControlMaxAge, 100)
        self.assertEqual(headers.stsSeconds, 315360000)
        self.assertEqual(headers.accessControlAllowMethods, ("GET", "OPTIONS", "PUT"))
        self.assertTrue(headers.hasCustomHeaders())
        self.assertTrue(headers.hasCorsHeaders())
        self.assertTrue(headers.hasSecureHeaders())
        self.assertEqual(len(fields(headers)), len(raw))

    def test_forwardAuthTLS(self) -> None:
        """
        forwardAuth.tls decodes the client TLS keys with their defaults and
        ignores the deprecated caOptional with a warning.
        """
        middleware, warnings = decodeHTTP(
            {
                "forwardAuth": {
                    "address": "https://auth",
                    "trustForwardHeader": False,
                    "tls": {"ca": "/ca.pem", "caOptional": True},
                }
            }
        )
        self.assertEqual(
            warnings,
            [
                f"{PATH}.forwardAuth.tls.caOptional: deprecated in Traefik: client "
                "authentication is a server setting; ignored"
            ],
        )
        self.assertEqual(middleware.config().tls, ClientTLS(ca="/ca.pem"))
        self.assertEqual(
            fields(ClientTLS()),
            {"ca": "", "cert": "", "key": "", "insecureSkipVerify": False},
        )
        self.assertIs(middleware.config().trustForwardHeader, False)

    def test_rateLimitSubsections(self) -> None:
        """
        rateLimit's sourceCriterion and redis subsections decode with Traefik's
        defaults.
        """
        middleware, _ = decodeHTTP(
            {
                "rateLimit": {
                    "average": 100,
                    "period": "1m",
                    "burst": 50,
                    "sourceCriterion": {"ipStrategy": {"depth": 2, "ipv6Subnet": 64}},
                    "redis": {},
                }
            }
        )
        limit = middleware.config()
        self.assertEqual(limit.period, Duration(60))
        self.assertEqual(
            limit.sourceCriterion,
            SourceCriterion(ipStrategy=IPStrategy(depth=2, ipv6Subnet=64)),
        )
        self.assertEqual(
            fields(limit.redis),
            {
                "endpoints": ("localhost:6379",),
                "tls": None,
                "username": "",
                "password": "",
                "db": 0,
                "poolSize": 0,
                "minIdleConns": 0,
                "maxActiveConns": 0,
                "readTimeout": Duration(3),
                "writeTimeout": Duration(3),
                "dialTimeout": Duration(5),
            },
        )
        self.assertEqual(limit.redis, Redis())

    def test_ipStrategyDefaults(self) -> None:
        """
        An empty ipStrategy means the remote address: depth 0, no excluded IPs,
        no IPv6 subnet.
        """
        middleware, _ = decodeHTTP(
            {"ipAllowList": {"sourceRange": ["10.0.0.0/8"], "ipStrategy": {}}}
        )
        self.assertEqual(
            fields(middleware.config().ipStrategy),
            {"depth": 0, "excludedIPs": (), "ipv6Subnet": None},
        )
        self.assertEqual(
            fields(SourceCriterion()),
            {"ipStrategy": None, "requestHeaderName": "", "requestHost": False},
        )

    def test_passTLSClientCertInfo(self) -> None:
        """
        passTLSClientCert.info and its subject and issuer sections have Traefik's
        keys, the issuer lacking organizationalUnit.
        """
        middleware, _ = decodeHTTP(
            {
                "passTLSClientCert": {
                    "pem": True,
                    "info": {"notAfter": True, "subject": {"commonName": True}, "issuer": {}},
                }
            }
        )
        info = middleware.config().info
        self.assertEqual(
            info,
            TLSClientCertificateInfo(
                notAfter=True,
                subject=TLSClientCertificateSubjectDNInfo(commonName=True),
                issuer=TLSClientCertificateIssuerDNInfo(),
            ),
        )
        self.assertEqual(
            list(fields(info)),
            ["notAfter", "notBefore", "sans", "serialNumber", "subject", "issuer"],
        )
        self.assertEqual(
            list(fields(TLSClientCertificateSubjectDNInfo())),
            [
                "country",
                "province",
                "locality",
                "organization",
                "organizationalUnit",
                "commonName",
                "serialNumber",
                "domainComponent",
            ],
        )
        self.assertNotIn("organizationalUnit", fields(TLSClientCertificateIssuerDNInfo()))

    def test_errorsOptionalKeys(self) -> None:
        """
        errors keeps statusRewrites as a map of codes and tells an empty
        errorRequestHeaders list from an absent one.
        """
        middleware, _ = decodeHTTP(
            {
                "errors": {
                    "status": ["500-599", "404,418"],
                    "statusRewrites": {"418": 404, "500-503": "502"},
                    "service": "pages",
                    "query": "/{status}.html",
                    "errorRequestHeaders": [],
                }
            }
        )
        page = middleware.config()
        self.assertEqual(page.statusRewrites, {"418": 404, "500-503": 502})
        self.assertEqual(page.errorRequestHeaders, ())
        self.assertEqual(page.statusRanges(), ((500, 599), (404, 404), (418, 418)))

    def test_redirectSchemePortIsAString(self) -> None:
        """
        redirectScheme.port is kept as a string even when written as a number.
        """
        middleware, _ = decodeHTTP({"redirectScheme": {"scheme": "https", "port": 8443}})
        self.assertEqual(middleware.config().port, "8443")


class TCPMiddlewareTests(SynchronousTestCase, FailureAssertions):
    def test_kinds(self) -> None:
        """
        Every TCP kind decodes, ipWhiteList sharing the ipAllowList model.
        """
        for kind, raw, expected in [
            ("ipAllowList", {"sourceRange": ["10.0.0.0/8"]}, {"sourceRange": ("10.0.0.0/8",)}),
            ("ipWhiteList", {"sourceRange": ["::1"]}, {"sourceRange": ("::1",)}),
            ("inFlightConn", {"amount": 5}, {"amount": 5}),
        ]:
            middleware, _ = decode(TCPMiddleware, {kind: raw}, TCP_PATH)
            self.assertEqual(middleware.kind(), kind)
            self.assertEqual(fields(middleware.config()), expected)
        middleware, _ = decode(TCPMiddleware, {"ipWhiteList": {"sourceRange": ["::1"]}}, TCP_PATH)
        self.assertIsInstance(middleware.config(), TCPIPAllowList)

    def test_noKind(self) -> None:
        """
        A TCP middleware with no kind fails at its own path.
        """
        self.assertFails(
            {},
            TCP_PATH,
            "exactly one of ipAllowList, ipWhiteList, inFlightConn must be set",
            TCPMiddleware,
            TCP_PATH,
        )

    def test_twoKinds(self) -> None:
        """
        A TCP middleware with two kinds fails naming both.
        """
        self.assertFails(
            {"inFlightConn": {"amount": 1}, "ipAllowList": {"sourceRange": ["::1"]}},
            TCP_PATH,
            "exactly one of ipAllowList, ipWhiteList, inFlightConn must be set, "
            "got ipAllowList and inFlightConn",
            TCPMiddleware,
            TCP_PATH,
        )

    def test_sourceRangeRequired(self) -> None:
        """
        A TCP ipAllowList without sourceRange fails.
        """
        self.assertFails(
            {"ipAllowList": {}},
            f"{TCP_PATH}.ipAllowList.sourceRange",
            "required key is missing",
            TCPMiddleware,
            TCP_PATH,
        )

    def test_invalidSourceRange(self) -> None:
        """
        A TCP ipWhiteList entry that is not an IP or CIDR fails at its index.
        """
        self.assertFails(
            {"ipWhiteList": {"sourceRange": ["10.0.0.0/8", "10.0.0.300"]}},
            f"{TCP_PATH}.ipWhiteList.sourceRange[1]",
            "'10.0.0.300' is not an IP address or CIDR range",
            TCPMiddleware,
            TCP_PATH,
        )

    def test_inFlightConnAmount(self) -> None:
        """
        inFlightConn.amount must be greater than 0.
        """
        self.assertFails(
            {"inFlightConn": {"amount": 0}},
            f"{TCP_PATH}.inFlightConn.amount",
            "must be greater than 0, got 0",
            TCPMiddleware,
            TCP_PATH,
        )


class CaseInsensitiveKeysTests(SynchronousTestCase, FailureAssertions):
    def test_kindAndFieldKeys(self) -> None:
        """
        Kind keys and field keys match whatever their case.
        """
        middleware, _ = decodeHTTP({"STRIPPREFIX": {"Prefixes": ["/a"], "FORCESLASH": "true"}})
        self.assertEqual(middleware.config(), StripPrefix(prefixes=("/a",), forceSlash=True))

    def test_userChosenMapKeysKeepTheirCase(self) -> None:
        """
        Header names in customRequestHeaders keep the case they were written in.
        """
        middleware, _ = decodeHTTP({"Headers": {"CustomRequestHeaders": {"X-Foo": "bar"}}})
        self.assertEqual(list(middleware.config().customRequestHeaders), ["X-Foo"])

    def test_literalsAreCanonicalised(self) -> None:
        """
        Encoding names decode case-insensitively to their canonical spelling.
        """
        middleware, _ = decodeHTTP(
            {"compress": {"encodings": ["GZIP", "Br"], "defaultEncoding": "BR"}}
        )
        self.assertEqual(middleware.config().encodings, ("gzip", "br"))
        self.assertEqual(middleware.config().defaultEncoding, "br")

    def test_sameKeyTwice(self) -> None:
        """
        A key written twice in different cases fails.
        """
        self.assertFails(
            {"addPrefix": {"prefix": "/a", "PREFIX": "/b"}},
            f"{PATH}.addPrefix.prefix",
            'set twice (as "prefix" and "PREFIX"); keys are case-insensitive',
        )


class OneOfTests(SynchronousTestCase, FailureAssertions):
    CHOICES = ", ".join(HTTP_MIDDLEWARE_KINDS + ("plugin",))

    def test_noKind(self) -> None:
        """
        A middleware table with no kind fails at the middleware's path.
        """
        self.assertFails({}, PATH, f"exactly one of {self.CHOICES} must be set")

    def test_twoKinds(self) -> None:
        """
        A middleware table with two kinds fails naming both, in model order.
        """
        self.assertFails(
            {"retry": {"attempts": 2}, "compress": {}},
            PATH,
            f"exactly one of {self.CHOICES} must be set, got compress and retry",
        )

    def test_disabledKind(self) -> None:
        """
        A kind set to false does not count as set.
        """
        self.assertFails({"compress": False}, PATH, f"exactly one of {self.CHOICES} must be set")

    def test_unknownKind(self) -> None:
        """
        An unknown kind fails and suggests the nearest known one.
        """
        self.assertFails(
            {"stripPrefixes": {}},
            f"{PATH}.stripPrefixes",
            'unknown key, did you mean "stripPrefix"?',
        )

    def test_pluginRejected(self) -> None:
        """
        A plugin middleware is known but fails because relayd runs no plugins.
        """
        self.assertFails(
            {"plugin": {"geoblock": {"allowed": ["FR"]}}},
            f"{PATH}.plugin",
            "relayd does not run Traefik plugins",
        )


class ValidationTests(SynchronousTestCase, FailureAssertions):
    def test_addPrefix(self) -> None:
        """
        addPrefix.prefix is required and not empty; like Traefik, a prefix
        without a leading slash is accepted.
        """
        self.assertFails({"addPrefix": {}}, f"{PATH}.addPrefix.prefix", "required key is missing")
        self.assertFails({"addPrefix": {"prefix": ""}}, f"{PATH}.addPrefix.prefix", "must not be empty")
        self.assertEqual(decode(HTTPMiddleware, {"addPrefix": {"prefix": "api"}})[0].addPrefix.prefix, "api")

    def test_basicAuthNeedsUsers(self) -> None:
        """
        basicAuth fails when neither users nor usersFile is set.
        """
        self.assertFails(
            {"basicAuth": {"realm": "x"}},
            f"{PATH}.basicAuth",
            "one of users or usersFile must be set",
        )

    def test_basicAuthUserShape(self) -> None:
        """
        A basicAuth user that is not user:hash fails without echoing the entry.
        """
        self.assertFails(
            {"basicAuth": {"users": ["a:b", "secret-hash"]}},
            f"{PATH}.basicAuth.users[1]",
            "must be of the form user:hash",
        )
        decodeHTTP({"basicAuth": {"usersFile": "/etc/users"}})

    def test_digestAuthUserShape(self) -> None:
        """
        A digestAuth user that is not user:realm:hash fails.
        """
        self.assertFails(
            {"digestAuth": {"users": ["test:hash"]}},
            f"{PATH}.digestAuth.users[0]",
            "must be of the form user:realm:hash",
        )

    def test_bufferingNegative(self) -> None:
        """
        buffering sizes may not be negative.
        """
        self.assertFails(
            {"buffering": {"memRequestBodyBytes": -1}},
            f"{PATH}.buffering.memRequestBodyBytes",
            "must not be negative, got -1",
        )

    def test_chainMiddlewares(self) -> None:
        """
        chain.middlewares is required, non-empty and has no empty names.
        """
        key = f"{PATH}.chain.middlewares"
        self.assertFails({"chain": {}}, key, "required key is missing")
        self.assertFails({"chain": {"middlewares": []}}, key, "must not be empty")
        self.assertFails(
            {"chain": {"middlewares": ["a", " "]}}, f"{key}[1]", "empty middleware name"
        )

    def test_circuitBreaker(self) -> None:
        """
        circuitBreaker needs a non-empty expression, a status code and
        non-negative durations.
        """
        key = f"{PATH}.circuitBreaker"
        self.assertFails({"circuitBreaker": {}}, f"{key}.expression", "required key is missing")
        self.assertFails(
            {"circuitBreaker": {"expression": "  "}}, f"{key}.expression", "must not be empty"
        )
        self.assertFails(
            {"circuitBreaker": {"expression": "NetworkErrorRatio() > 0.3", "responseCode": 700}},
            f"{key}.responseCode",
            "must be an HTTP status code, got 700",
        )
        self.assertFails(
            {"circuitBreaker": {"expression": "NetworkErrorRatio() > 0.3", "checkPeriod": "-1s"}},
            f"{key}.checkPeriod",
            "must not be negative, got -1s",
        )

    def test_compressContentTypesExclusive(self) -> None:
        """
        compress fails when both excludedContentTypes and includedContentTypes
        are set.
        """
        self.assertFails(
            {
                "compress": {
                    "excludedContentTypes": ["text/event-stream"],
                    "includedContentTypes": ["text/html"],
                }
            },
            f"{PATH}.compress",
            "excludedContentTypes and includedContentTypes are mutually exclusive",
        )

    def test_compressMediaType(self) -> None:
        """
        A compress content type that is not a media type fails at its index,
        while parameters are accepted.
        """
        self.assertFails(
            {"compress": {"includedContentTypes": ["text/html; charset=utf-8", "text html"]}},
            f"{PATH}.compress.includedContentTypes[1]",
            "'text html' is not a media type such as text/html",
        )

    def test_compressEncodings(self) -> None:
        """
        compress needs known encodings, at least one, and a default among them.
        """
        key = f"{PATH}.compress"
        self.assertFails(
            {"compress": {"encodings": ["deflate"]}},
            f"{key}.encodings[0]",
            "expected one of \"gzip\", \"br\", \"zstd\", got the string 'deflate'",
        )
        self.assertFails(
            {"compress": {"encodings": []}}, f"{key}.encodings", "must list at least one encoding"
        )
        self.assertFails(
            {"compress": {"encodings": ["gzip"], "defaultEncoding": "zstd"}},
            f"{key}.defaultEncoding",
            '"zstd" is not one of the encodings',
        )

    def test_errorsServiceRequired(self) -> None:
        """
        errors.service is required and may not be empty.
        """
        key = f"{PATH}.errors.service"
        self.assertFails({"errors": {"status": ["500"]}}, key, "required key is missing")
        self.assertFails({"errors": {"service": ""}}, key, "must not be empty")

    def test_errorsStatus(self) -> None:
        """
        errors.status entries must be codes, ranges or comma lists of them.
        """
        key = f"{PATH}.errors.status"
        self.assertFails(
            {"errors": {"service": "s", "status": ["500", "5xx"]}},
            f"{key}[1]",
            "'5xx' is not a status code or range such as 500-599",
        )
        self.assertFails(
            {"errors": {"service": "s", "status": ["599-500"]}},
            f"{key}[0]",
            "'599-500' has a range whose start is above its end",
        )

    def test_errorsStatusRewrites(self) -> None:
        """
        errors.statusRewrites keys are status ranges and values status codes.
        """
        key = f"{PATH}.errors.statusRewrites"
        self.assertFails(
            {"errors": {"service": "s", "statusRewrites": {"4x": 404}}},
            f"{key}.4x",
            "'4x' is not a status code or range such as 500-599",
        )
        self.assertFails(
            {"errors": {"service": "s", "statusRewrites": {"418": 42}}},
            f"{key}.418",
            "must be an HTTP status code, got 42",
        )

    def test_parseStatusRanges(self) -> None:
        """
        parseStatusRanges reads codes, ranges and comma lists with spaces.
        """
        self.assertEqual(parseStatusRanges("500"), ((500, 500),))
        self.assertEqual(parseStatusRanges("500-599"), ((500, 599),))
        self.assertEqual(parseStatusRanges("404, 418"), ((404, 404), (418, 418)))
        self.assertRaises(ValueError, parseStatusRanges, "")
        self.assertRaises(ValueError, parseStatusRanges, "500-550-599")

    def test_forwardAuthAddress(self) -> None:
        """
        forwardAuth.address is required and must be an http(s) URL.
        """
        key = f"{PATH}.forwardAuth.address"
        self.assertFails({"forwardAuth": {}}, key, "required key is missing")
        self.assertFails(
            {"forwardAuth": {"address": "auth:9000/verify"}},
            key,
            "'auth:9000/verify' is not an http:// or https:// URL",
        )

    def test_forwardAuthRegexAndHeaders(self) -> None:
        """
        forwardAuth's header regex must compile and its header lists hold
        header names.
        """
        key = f"{PATH}.forwardAuth"
        base = {"address": "http://auth"}
        error = self.assertRaises(
            ConfigError,
            decodeHTTP,
            {"forwardAuth": {**base, "authResponseHeadersRegex": "^X-("}},
        )
        self.assertEqual(error.path, f"{key}.authResponseHeadersRegex")
        self.assertTrue(
            error.message.startswith("invalid regular expression '^X-(': "), error.message
        )
        self.assertFails(
            {"forwardAuth": {**base, "authRequestHeaders": ["Bad Header"]}},
            f"{key}.authRequestHeaders[0]",
            "'Bad Header' is not a valid header name",
        )
        self.assertFails(
            {"forwardAuth": {**base, "maxBodySize": -2}},
            f"{key}.maxBodySize",
            "must be -1 (no limit) or a number of bytes, got -2",
        )

    def test_headersEmpty(self) -> None:
        """
        A headers middleware that configures nothing fails, as in Traefik.
        """
        self.assertFails({"headers": {}}, f"{PATH}.headers", "no header setting is configured")

    def test_headersCustomHeaderName(self) -> None:
        """
        Custom header names must be valid tokens.
        """
        self.assertFails(
            {"headers": {"customResponseHeaders": {"X Bad": "v"}}},
            f"{PATH}.headers.customResponseHeaders.X Bad",
            "'X Bad' is not a valid header name",
        )

    def test_headersCustomHeaderValue(self) -> None:
        """
        Custom header values may not contain line breaks.
        """
        self.assertFails(
            {"headers": {"customRequestHeaders": {"X-Foo": "a\r\nX-Injected: 1"}}},
            f"{PATH}.headers.customRequestHeaders.X-Foo",
            "header values may not contain CR, LF or NUL",
        )

    def test_headersOtherNames(self) -> None:
        """
        sslProxyHeaders keys and the header-name lists are checked too.
        """
        self.assertFails(
            {"headers": {"sslProxyHeaders": {"X:Proto": "https"}}},
            f"{PATH}.headers.sslProxyHeaders.X:Proto",
            "'X:Proto' is not a valid header name",
        )
        self.assertFails(
            {"headers": {"hostsProxyHeaders": ["X-Forwarded-Host", ""]}},
            f"{PATH}.headers.hostsProxyHeaders[1]",
            "'' is not a valid header name",
        )

    def test_headersOriginRegex(self) -> None:
        """
        accessControlAllowOriginListRegex entries must compile.
        """
        error = self.assertRaises(
            ConfigError,
            decodeHTTP,
            {"headers": {"accessControlAllowOriginListRegex": ["^ok$", "[a-"]}},
        )
        self.assertEqual(error.path, f"{PATH}.headers.accessControlAllowOriginListRegex[1]")
        self.assertTrue(error.message.startswith("invalid regular expression '[a-': "))

    def test_headersStsSeconds(self) -> None:
        """
        stsSeconds may not be negative.
        """
        self.assertFails(
            {"headers": {"stsSeconds": -5}},
            f"{PATH}.headers.stsSeconds",
            "must not be negative, got -5",
        )

    def test_headersRemovedOptionsWarn(self) -> None:
        """
        Header options removed in Traefik v3 are ignored with a warning.
        """
        middleware, warnings = decodeHTTP({"headers": {"sslRedirect": True, "frameDeny": True}})
        self.assertTrue(middleware.config().frameDeny)
        self.assertEqual(
            warnings,
            [
                f"{PATH}.headers.sslRedirect: removed in Traefik v3 and has no effect; "
                "use a redirectScheme middleware instead; ignored"
            ],
        )

    def test_ipAllowListSourceRange(self) -> None:
        """
        ipAllowList.sourceRange is required, non-empty and made of IPs or CIDRs.
        """
        key = f"{PATH}.ipAllowList.sourceRange"
        self.assertFails({"ipAllowList": {}}, key, "required key is missing")
        self.assertFails({"ipAllowList": {"sourceRange": []}}, key, "must not be empty")
        self.assertFails(
            {"ipAllowList": {"sourceRange": ["10.0.0.0/33"]}},
            f"{key}[0]",
            "'10.0.0.0/33' is not an IP address or CIDR range",
        )

    def test_ipWhiteListSourceRange(self) -> None:
        """
        The deprecated ipWhiteList kind needs a sourceRange too.
        """
        self.assertFails(
            {"ipWhiteList": {}}, f"{PATH}.ipWhiteList.sourceRange", "required key is missing"
        )

    def test_ipAllowListRejectStatusCode(self) -> None:
        """
        ipAllowList.rejectStatusCode must be an HTTP status code.
        """
        self.assertFails(
            {"ipAllowList": {"sourceRange": ["::1"], "rejectStatusCode": 99}},
            f"{PATH}.ipAllowList.rejectStatusCode",
            "must be an HTTP status code, got 99",
        )

    def test_ipStrategy(self) -> None:
        """
        ipStrategy.ipv6Subnet is from 1 to 128 and excludedIPs are IPs or CIDRs.
        """
        key = f"{PATH}.ipAllowList.ipStrategy"
        base = {"sourceRange": ["::1"]}
        self.assertFails(
            {"ipAllowList": {**base, "ipStrategy": {"ipv6Subnet": 0}}},
            f"{key}.ipv6Subnet",
            "must be from 1 to 128, got 0",
        )
        self.assertFails(
            {"ipAllowList": {**base, "ipStrategy": {"excludedIPs": ["nope"]}}},
            f"{key}.excludedIPs[0]",
            "'nope' is not an IP address or CIDR range",
        )
        self.assertFails(
            {"ipAllowList": {**base, "ipStrategy": {"depth": -1}}},
            f"{key}.depth",
            "must not be negative, got -1",
        )

    def test_inFlightReqAmount(self) -> None:
        """
        inFlightReq.amount is required and greater than 0.
        """
        key = f"{PATH}.inFlightReq.amount"
        self.assertFails({"inFlightReq": {}}, key, "required key is missing")
        self.assertFails({"inFlightReq": {"amount": 0}}, key, "must be greater than 0, got 0")

    def test_sourceCriterionExclusive(self) -> None:
        """
        sourceCriterion accepts only one of its criteria.
        """
        self.assertFails(
            {
                "inFlightReq": {
                    "amount": 1,
                    "sourceCriterion": {"requestHost": True, "requestHeaderName": "X-User"},
                }
            },
            f"{PATH}.inFlightReq.sourceCriterion",
            "only one of ipStrategy, requestHeaderName and requestHost may be set",
        )

    def test_sourceCriterionHeaderName(self) -> None:
        """
        sourceCriterion.requestHeaderName must be a header name.
        """
        self.assertFails(
            {"rateLimit": {"sourceCriterion": {"requestHeaderName": "X User"}}},
            f"{PATH}.rateLimit.sourceCriterion.requestHeaderName",
            "'X User' is not a valid header name",
        )

    def test_rateLimitNonNegative(self) -> None:
        """
        rateLimit average, burst and period may not be negative.
        """
        key = f"{PATH}.rateLimit"
        self.assertFails(
            {"rateLimit": {"average": -1}}, f"{key}.average", "must not be negative, got -1"
        )
        self.assertFails(
            {"rateLimit": {"burst": -3}}, f"{key}.burst", "must not be negative, got -3"
        )
        self.assertFails(
            {"rateLimit": {"period": "-1s"}}, f"{key}.period", "must not be negative, got -1s"
        )

    def test_redirectRegex(self) -> None:
        """
        redirectRegex.regex must compile.
        """
        error = self.assertRaises(
            ConfigError, decodeHTTP, {"redirectRegex": {"regex": "^http://(.*", "replacement": "x"}}
        )
        self.assertEqual(error.path, f"{PATH}.redirectRegex.regex")
        self.assertTrue(error.message.startswith("invalid regular expression '^http://(.*': "))

    def test_redirectSchemeScheme(self) -> None:
        """
        redirectScheme.scheme is required and must be a URL scheme.
        """
        key = f"{PATH}.redirectScheme.scheme"
        self.assertFails({"redirectScheme": {"port": "443"}}, key, "required key is missing")
        self.assertFails(
            {"redirectScheme": {"scheme": "https://"}},
            key,
            "'https://' is not a URL scheme such as https",
        )

    def test_redirectSchemePort(self) -> None:
        """
        redirectScheme.port, when set, is a port number.
        """
        key = f"{PATH}.redirectScheme.port"
        self.assertFails(
            {"redirectScheme": {"scheme": "https", "port": "https"}},
            key,
            "'https' is not a port number from 1 to 65535",
        )
        self.assertFails(
            {"redirectScheme": {"scheme": "https", "port": 70000}},
            key,
            "'70000' is not a port number from 1 to 65535",
        )

    def test_replacePath(self) -> None:
        """
        replacePath.path is required and may not be empty.
        """
        key = f"{PATH}.replacePath.path"
        self.assertFails({"replacePath": {}}, key, "required key is missing")
        self.assertFails({"replacePath": {"path": ""}}, key, "must not be empty")

    def test_replacePathRegex(self) -> None:
        """
        replacePathRegex.regex must compile once trimmed, as Traefik trims it.
        """
        decodeHTTP({"replacePathRegex": {"regex": "  ^/foo/(.*)  ", "replacement": "/bar/$1"}})
        error = self.assertRaises(
            ConfigError, decodeHTTP, {"replacePathRegex": {"regex": "^/foo/(.*"}}
        )
        self.assertEqual(error.path, f"{PATH}.replacePathRegex.regex")

    def test_stripPrefixRegex(self) -> None:
        """
        Each stripPrefixRegex.regex entry must compile; errors name the index.
        """
        error = self.assertRaises(
            ConfigError, decodeHTTP, {"stripPrefixRegex": {"regex": ["/a/[a-z]+", "/b/(["]}}
        )
        self.assertEqual(error.path, f"{PATH}.stripPrefixRegex.regex[1]")
        self.assertTrue(error.message.startswith("invalid regular expression '/b/([': "))

    def test_stripPrefixEntries(self) -> None:
        """
        stripPrefix.prefixes entries must start with a slash.
        """
        self.assertFails(
            {"stripPrefix": {"prefixes": ["/ok", "api"]}},
            f"{PATH}.stripPrefix.prefixes[1]",
            "must start with '/', got 'api'",
        )

    def test_retryAttempts(self) -> None:
        """
        retry.attempts is required and greater than 0; initialInterval is not
        negative.
        """
        key = f"{PATH}.retry"
        self.assertFails({"retry": {}}, f"{key}.attempts", "required key is missing")
        self.assertFails(
            {"retry": {"attempts": 0}}, f"{key}.attempts", "must be greater than 0, got 0"
        )
        self.assertFails(
            {"retry": {"attempts": 2, "initialInterval": "-100ms"}},
            f"{key}.initialInterval",
            "must not be negative, got -100ms",
        )

    def test_errorsAreCollected(self) -> None:
        """
        Problems in several keys of one kind are all reported at once.
        """
        error = self.assertRaises(
            ConfigError,
            decodeHTTP,
            {"circuitBreaker": {"responseCode": 1, "checkPeriod": "-1s"}},
        )
        self.assertIsInstance(error, ConfigErrors)
        self.assertEqual(
            [e.path for e in error.errors],
            [
                f"{PATH}.circuitBreaker.responseCode",
                f"{PATH}.circuitBreaker.checkPeriod",
                f"{PATH}.circuitBreaker.expression",
            ],
        )


class FlatLabelTests(SynchronousTestCase, FailureAssertions):
    def decodeFlat(self, items: list[tuple[str, str]]) -> HTTPMiddleware:
        middleware, _ = decodeHTTP(flatToTree(HTTPMiddleware, items, PATH))
        return middleware

    def test_customHeaderLabel(self) -> None:
        """
        A lowercase label sets a custom request header, keeping the name's case.
        """
        middleware = self.decodeFlat([("headers.customrequestheaders.X-Foo", "bar")])
        self.assertEqual(middleware.config().customRequestHeaders, {"X-Foo": "bar"})

    def test_commaSeparatedList(self) -> None:
        """
        A list label takes comma-separated values.
        """
        middleware = self.decodeFlat([("stripprefix.prefixes", "/a,/b")])
        self.assertEqual(middleware.config(), StripPrefix(prefixes=("/a", "/b")))

    def test_twoKindsFromLabels(self) -> None:
        """
        Labels that set two kinds on one middleware fail the one-kind rule.
        """
        tree = flatToTree(
            HTTPMiddleware,
            [("headers.customrequestheaders.X-Foo", "bar"), ("stripprefix.prefixes", "/a,/b")],
            PATH,
        )
        error = self.assertRaises(ConfigError, decodeHTTP, tree)
        self.assertEqual(error.path, PATH)
        self.assertTrue(error.message.endswith("must be set, got headers and stripPrefix"))

    def test_bareKindLabel(self) -> None:
        """
        A bare kind label set to true enables a kind that needs no keys.
        """
        middleware = self.decodeFlat([("compress", "true")])
        self.assertEqual(middleware.config(), Compress())

    def test_nestedAndTypedLabels(self) -> None:
        """
        Labels reach nested sections and are coerced to the model's types.
        """
        middleware = self.decodeFlat(
            [
                ("ratelimit.average", "100"),
                ("ratelimit.period", "1m"),
                ("ratelimit.sourcecriterion.ipstrategy.depth", "2"),
            ]
        )
        limit = middleware.config()
        self.assertEqual((limit.average, limit.period, limit.burst), (100, Duration(60), 1))
        self.assertEqual(limit.sourceCriterion.ipStrategy, IPStrategy(depth=2))

    def test_errorsLabels(self) -> None:
        """
        errors labels split status on commas and fill statusRewrites by code.
        """
        middleware = self.decodeFlat(
            [
                ("errors.status", "500-599,404"),
                ("errors.statusrewrites.418", "404"),
                ("errors.service", "pages"),
            ]
        )
        self.assertEqual(
            middleware.config(),
            ErrorPage(
                status=("500-599", "404"),
                statusRewrites=FrozenMap({"418": 404}),
                service="pages",
            ),
        )

    def test_labelValidation(self) -> None:
        """
        Values from labels are validated like values from files.
        """
        tree = flatToTree(HTTPMiddleware, [("stripprefix.prefixes", "api")], PATH)
        self.assertFails(tree, f"{PATH}.stripPrefix.prefixes[0]", "must start with '/', got 'api'")

    def test_unknownLabelKey(self) -> None:
        """
        An unknown label key fails with its canonical path and a suggestion.
        """
        error = self.assertRaises(
            ConfigError, flatToTree, HTTPMiddleware, [("stripprefix.prefixs", "/a")], PATH
        )
        self.assertEqual(
            str(error), f'{PATH}.stripPrefix.prefixs: unknown key, did you mean "prefixes"?'
        )

    def test_addPrefixModel(self) -> None:
        """
        A label-built addPrefix equals the directly built model.
        """
        middleware = self.decodeFlat([("ADDPREFIX.PREFIX", "/api")])
        self.assertEqual(middleware.config(), AddPrefix(prefix="/api"))
