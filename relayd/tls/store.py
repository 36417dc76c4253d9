"""
The TLS runtime of one configuration generation: the certificate store
(certificates by exact and wildcard name, the default certificate), the TLS
options by name, which options each host name gets from the routers' Host
rules, and the server contexts, built on first use and reused while their
certificate and options are unchanged, across generations too.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Sequence

import attrs
from OpenSSL import SSL
from twisted.logger import Logger

from relayd.config.dynamic import TLSConfig, TLSOptions
from relayd.tls.hosts import (
    DEFAULT_OPTIONS,
    RouterTLSProblem,
    RouterTLSUse,
    mapHosts,
    normalizeHost,
)
from relayd.tls.material import (
    KeyPair,
    MaterialError,
    describe,
    generatedDefault,
    generatedSoFar,
    loadKeyPair,
)
from relayd.tls.options import (
    BootstrapSpec,
    Problem,
    ResolvedOptions,
    buildContext,
    resolveOptions,
)

DEFAULT_STORE = "default"

_log = Logger()


@attrs.frozen
class TLSError:
    """
    A problem of the tls section, at its key path (C{tls.certificates[2]},
    C{tls.options.modern@file.cipherSuites[0]}). Non-fatal ones say what is
    ignored.
    """

    path: str
    message: str
    fatal: bool = True

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@attrs.frozen(eq=False)
class Selection:
    """
    The outcome of a handshake's server name: the context to switch to, the
    name and settings of the options applied.
    """

    context: SSL.Context
    optionsName: str
    options: ResolvedOptions
    certificate: KeyPair


def _wildcardCandidates(name: str) -> Iterable[str]:
    """
    The wildcard patterns that match C{name}, most specific first: Traefik
    replaces the labels of the server name with C{*} from the left, one more
    at a time (so C{*.example.com} covers exactly one label).
    """
    labels = name.split(".")
    for index in range(len(labels)):
        yield ".".join(["*"] * (index + 1) + labels[index + 1 :])


class TLSRuntime:
    """
    Certificates, TLS options and the host-to-options map of one generation.
    Never changed once built, except for its cache of contexts.

    @ivar errors: the problems of the tls section, for the API and the logs;
        every certificate and set of options without one keeps serving.
    @ivar routerProblems: by router name, what routers must show in their
        status (unknown or invalid TLS options disable a router; conflicting
        options per host are warnings).
    """

    def __init__(
        self,
        options: Mapping[str, ResolvedOptions],
        broken: Mapping[str, str],
        exact: Mapping[str, KeyPair],
        wildcards: Mapping[str, KeyPair],
        default: KeyPair | None,
        hostOptions: Mapping[str | None, Mapping[str, str]],
        routerOptions: Mapping[tuple[str, str], str],
        errors: Sequence[TLSError] = (),
        routerProblems: Mapping[str, Sequence[RouterTLSProblem]] | None = None,
        pairs: Mapping[bytes, KeyPair] | None = None,
        contexts: dict[tuple[bytes, ResolvedOptions], SSL.Context] | None = None,
    ) -> None:
        self._options = dict(options)
        self._broken = dict(broken)
        self._exact = dict(exact)
        self._wildcards = dict(wildcards)
        self._default = default
        self._hostOptions = {ep: dict(hosts) for ep, hosts in hostOptions.items()}
        self._routerOptions = dict(routerOptions)
        self.errors: tuple[TLSError, ...] = tuple(errors)
        self.routerProblems: dict[str, tuple[RouterTLSProblem, ...]] = {
            name: tuple(problems) for name, problems in (routerProblems or {}).items()
        }
        self._pairs = dict(pairs or {})
        # Shared with the generations before and after this one (each build
        # drops what it no longer uses), so a context built late in one
        # generation still serves the next.
        self._contexts: dict[tuple[bytes, ResolvedOptions], SSL.Context] = contexts if contexts is not None else {}
        self.bootstrapSpec = BootstrapSpec.covering(list(self._options.values()))

    @classmethod
    def empty(cls) -> TLSRuntime:
        """
        The TLS runtime of a configuration without a tls section or TLS
        routers: Traefik's default options and the generated certificate.
        """
        return cls.build(TLSConfig())

    @classmethod
    def build(
        cls,
        config: TLSConfig,
        routers: Iterable[RouterTLSUse] = (),
        previous: TLSRuntime | None = None,
    ) -> TLSRuntime:
        """
        Compile the tls section and the TLS routers. Problems are collected,
        never raised: a bad certificate is left out, bad options refuse only
        the hosts and routers that use them.

        @param previous: the last generation's TLS runtime, whose parsed
            certificates and built contexts are reused where unchanged.
        """
        errors: list[TLSError] = []
        pairCache: dict[bytes, KeyPair] = dict(previous._pairs) if previous is not None else {}
        used: list[KeyPair] = []

        # Options: Traefik's defaults stand in for a missing "default".
        allOptions: dict[str, TLSOptions] = dict(config.options)
        allOptions.setdefault(DEFAULT_OPTIONS, TLSOptions())
        options: dict[str, ResolvedOptions] = {}
        broken: dict[str, str] = {}
        for name in sorted(allOptions):
            resolved, problems = resolveOptions(allOptions[name], f"tls.options.{name}")
            errors.extend(_fromProblem(p) for p in problems)
            if resolved is None:
                broken[name] = "; ".join(p.message for p in problems if p.fatal)
            else:
                options[name] = resolved

        # Certificates: the first certificate for a given set of names wins.
        byNames: dict[str, KeyPair] = {}
        for index, certificate in enumerate(config.certificates):
            path = f"tls.certificates[{index}]"
            stores = certificate.stores or (DEFAULT_STORE,)
            unknown = [s for s in stores if s != DEFAULT_STORE]
            if unknown:
                errors.append(
                    TLSError(
                        f"{path}.stores",
                        f"only the {DEFAULT_STORE!r} store is used; {', '.join(map(repr, unknown))} ignored",
                        fatal=DEFAULT_STORE not in stores,
                    )
                )
                if DEFAULT_STORE not in stores:
                    continue
            try:
                pair = loadKeyPair(certificate.certFile, certificate.keyFile, pairCache)
            except MaterialError as e:
                errors.append(TLSError(path, f"certificate {describe(certificate.certFile)}: {e}"))
                continue
            used.append(pair)
            key = ",".join(sorted(pair.names))
            byNames.setdefault(key, pair)
        exact: dict[str, KeyPair] = {}
        wildcards: dict[str, KeyPair] = {}
        # Traefik looks certificates up in reverse order of their joined names.
        for key in sorted(byNames, reverse=True):
            pair = byNames[key]
            for name in pair.names:
                if "*" in name:
                    wildcards.setdefault(name.rstrip("."), pair)
                else:
                    exact.setdefault(name, pair)

        # Stores: only "default" exists, as in Traefik.
        default: KeyPair | None = None
        for name in sorted(config.stores):
            store = config.stores[name]
            path = f"tls.stores.{name}"
            if name != DEFAULT_STORE:
                errors.append(TLSError(path, f"only the {DEFAULT_STORE!r} store is used; this store is ignored"))
                continue
            if store.defaultCertificate is not None:
                files = store.defaultCertificate
                try:
                    default = loadKeyPair(files.certFile, files.keyFile, pairCache)
                    used.append(default)
                except MaterialError as e:
                    errors.append(
                        TLSError(
                            f"{path}.defaultCertificate",
                            f"certificate {describe(files.certFile)}: {e}; "
                            "the generated default certificate is served instead",
                        )
                    )
            elif store.defaultGeneratedCert is not None:
                errors.append(
                    TLSError(
                        f"{path}.defaultGeneratedCert",
                        "certificate resolvers are not supported yet; "
                        "the generated default certificate is served instead",
                        fatal=False,
                    )
                )

        hostOptions, routerOptions, routerProblems = mapHosts(list(routers), options, broken)

        usedIds = {id(pair) for pair in used}
        pairs = {key: pair for key, pair in pairCache.items() if id(pair) in usedIds}
        contexts: dict[tuple[bytes, ResolvedOptions], SSL.Context] = {}
        if previous is not None:
            contexts = previous._contexts
            digests = {pair.digest for pair in used}
            generated = generatedSoFar()
            if generated is not None:
                digests.add(generated.digest)
            live = set(options.values())
            for stale in [k for k in contexts if k[0] not in digests or k[1] not in live]:
                del contexts[stale]
        for error in errors:
            _log.error("TLS configuration: {error}", error=str(error))
        return cls(
            options=options,
            broken=broken,
            exact=exact,
            wildcards=wildcards,
            default=default,
            hostOptions=hostOptions,
            routerOptions=routerOptions,
            errors=errors,
            routerProblems=routerProblems,
            pairs=pairs,
            contexts=contexts,
        )

    # -- what the entrypoints ask --

    def optionsNameFor(self, host: str, entryPoint: str | None = None) -> str:
        """
        The name of the TLS options that apply to a host name (from the SNI or
        a Host header; a port is ignored): the options of the TLS routers whose
        Host rules name it, or C{default}.

        @param entryPoint: the entrypoint the connection came in on; routers
            map hosts per entrypoint, as in Traefik. Without it, the routers
            of every entrypoint count.
        """
        name = normalizeHost(host)
        if not name:
            return DEFAULT_OPTIONS
        hosts = self._hostOptions.get(entryPoint, {})
        return hosts.get(name, DEFAULT_OPTIONS)

    def routerOptionsName(self, router: str, entryPoint: str | None = None) -> str:
        """
        The TLS options a TLS router stands for on an entrypoint (C{default}
        when its own conflict with another router's for one of its hosts).
        This is what Traefik compares with the connection's options to answer
        421 Misdirected Request.
        """
        if entryPoint is not None:
            found = self._routerOptions.get((router, entryPoint))
            if found is not None:
                return found
        for (name, _), options in sorted(self._routerOptions.items()):
            if name == router:
                return options
        return DEFAULT_OPTIONS

    def optionsProblem(self, name: str) -> str | None:
        """
        Why the TLS options of that (resolved) name cannot be used, or None.
        """
        if name in self._options:
            return None
        if name in self._broken:
            return f'the TLS options "{name}" are invalid: {self._broken[name]}'
        return f'the TLS options "{name}" do not exist'

    def certificateFor(self, serverName: str | None) -> KeyPair | None:
        """
        The certificate chosen for a server name by name alone: exact name,
        then wildcard; None when neither fits.
        """
        name = (serverName or "").strip().lower()
        if not name:
            return None
        pair = self._exact.get(name)
        if pair is not None:
            return pair
        if self._wildcards:
            for candidate in _wildcardCandidates(name):
                pair = self._wildcards.get(candidate)
                if pair is not None:
                    return pair
        return None

    @property
    def defaultCertificate(self) -> KeyPair:
        """
        The default store's certificate, or the generated one.
        """
        return self._default if self._default is not None else generatedDefault()

    def select(
        self,
        serverName: str | None,
        entryPoint: str | None = None,
        options: str | None = None,
        localAddress: str | None = None,
    ) -> Selection | None:
        """
        Everything a handshake needs once its server name is known; None when
        it must be refused (strict SNI without a certificate for the name, or
        options that are unknown or invalid).

        @param options: the options to apply whatever the name (a TCP router
            that terminates TLS with its own options); by default those mapped
            to the server name.
        @param localAddress: without SNI, the address the client connected
            to: a certificate for that IP address is served, as in Traefik.
        """
        name = (serverName or "").strip().lower()
        optionsName = options or (self.optionsNameFor(name, entryPoint) if name else DEFAULT_OPTIONS)
        resolved = self._options.get(optionsName)
        if resolved is None:
            return None
        pair = self.certificateFor(name or localAddress)
        if pair is None:
            if resolved.sniStrict:
                return None
            pair = self.defaultCertificate
        return Selection(
            context=self._context(pair, resolved),
            optionsName=optionsName,
            options=resolved,
            certificate=pair,
        )

    def contextFor(
        self,
        serverName: str | None,
        *,
        entryPoint: str | None = None,
        options: str | None = None,
        localAddress: str | None = None,
    ) -> SSL.Context | None:
        """
        The server context for a handshake whose ClientHello carried the SNI
        C{serverName} (None when absent), or None to refuse it. See
        L{select}.
        """
        selection = self.select(serverName, entryPoint, options, localAddress)
        return selection.context if selection is not None else None

    def _context(self, pair: KeyPair, options: ResolvedOptions) -> SSL.Context:
        key = (pair.digest, options)
        context = self._contexts.get(key)
        if context is None:
            context = self._contexts[key] = buildContext(pair, options)
        return context


def _fromProblem(problem: Problem) -> TLSError:
    return TLSError(problem.path, problem.message, problem.fatal)


def serverConnectionCreator(currentRuntime: Callable[[], TLSRuntime], entryPoint: str | None = None) -> Any:
    """
    The connection creator of L{relayd.tls.creator} for an entrypoint (here
    too, for callers that only know this module).
    """
    from relayd.tls.creator import serverConnectionCreator as make

    return make(currentRuntime, entryPoint)
