"""
The dashboard (C{dashboard@internal}): a few static files shipped inside the
package (C{relayd/api/webui/}), a page that reads the REST API with relative
URLs (C{../api/...}) and redraws itself as the configuration changes.

The handler serves a file by C{request.relayd.forwardPath}, the path left
after the dashboard's stripPrefix (or after C{api@internal} handed over
C{/dashboard/...}): C{/} is C{index.html}, C{/app.js} is C{app.js}. Only the
files found in that folder when the handler is made can be served, so no
path reaches outside it.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import Any, Mapping
from urllib.parse import urlsplit

import attrs
from twisted.logger import Logger
from zope.interface import implementer

from relayd.interfaces import IHTTPHandler
from relayd.proxy.responses import plainResponse
from relayd.runtime.build import BuildContext

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
}

# The page talks to its own origin only: no script, style, font or image
# from anywhere else, and no framing.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
)

# No file name carries a version, so browsers revalidate every time (cheap,
# thanks to the ETag) and never run an old app.js after an upgrade.
CACHE_CONTROL = "no-cache"


@attrs.frozen
class Asset:
    """
    One file of the dashboard, read once.
    """

    name: str
    body: bytes
    contentType: str
    etag: str


def loadAssets(package: str = "relayd.api", folder: str = "webui") -> dict[str, Asset]:
    """
    The dashboard's files by URL path (C{/index.html}, C{/app.js}, ...), with
    C{/} for C{index.html}. Files of an unknown type are left out.
    """
    assets: dict[str, Asset] = {}
    root = resources.files(package).joinpath(folder)
    for entry in root.iterdir():
        if not entry.is_file():
            continue
        name = entry.name
        suffix = name[name.rfind(".") :] if "." in name else ""
        contentType = CONTENT_TYPES.get(suffix)
        if contentType is None or name.startswith("."):
            continue
        body = entry.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        assets["/" + name] = Asset(name, body, contentType, etag)
    if "/index.html" in assets:
        assets["/"] = assets["/index.html"]
    return assets


_assets: dict[str, Asset] | None = None


def sharedAssets() -> dict[str, Asset]:
    """
    The packaged assets, read on first use and kept for the process (they do
    not change while it runs; every configuration generation shares them).
    """
    global _assets
    if _assets is None:
        _assets = loadAssets()
    return _assets


@implementer(IHTTPHandler)
class DashboardHandler:
    """
    Serves the dashboard's files: C{GET} and C{HEAD} only, C{404} for
    anything that is not one of them.
    """

    _log = Logger()

    def __init__(self, assets: Mapping[str, Asset]) -> None:
        self.assets = assets

    def handle(self, request: Any) -> None:
        try:
            self._handle(request)
        except Exception:
            self._log.failure("dashboard: answering {uri!r} failed", uri=getattr(request, "uri", b""))
            plainResponse(request, 500)

    def _handle(self, request: Any) -> None:
        if request.method not in (b"GET", b"HEAD"):
            request.responseHeaders.setRawHeaders(b"allow", [b"GET, HEAD"])
            plainResponse(request, 405)
            return
        path = request.relayd.forwardPath or "/"
        asset = self.assets.get(path)
        if asset is None:
            plainResponse(request, 404)
            return
        if path == "/" and not _requestPath(request).endswith("/"):
            # The page uses relative URLs: /dashboard must become /dashboard/.
            _redirectToDirectory(request)
            return
        headers = request.responseHeaders
        headers.setRawHeaders(b"cache-control", [CACHE_CONTROL.encode()])
        headers.setRawHeaders(b"etag", [asset.etag.encode()])
        headers.setRawHeaders(b"x-content-type-options", [b"nosniff"])
        if asset.contentType.startswith("text/html"):
            headers.setRawHeaders(b"content-security-policy", [CONTENT_SECURITY_POLICY.encode()])
            headers.setRawHeaders(b"referrer-policy", [b"same-origin"])
        if _matchesETag(request, asset.etag):
            request.setResponseCode(304)
            request.finish()
            return
        request.setResponseCode(200)
        headers.setRawHeaders(b"content-type", [asset.contentType.encode()])
        headers.setRawHeaders(b"content-length", [str(len(asset.body)).encode()])
        if request.method != b"HEAD":
            request.write(asset.body)
        request.finish()


def _requestPath(request: Any) -> str:
    """
    The path the client asked for (before any stripPrefix).
    """
    return urlsplit(request.uri.decode("latin-1")).path


def _redirectToDirectory(request: Any) -> None:
    """
    Send the client to the same path with a trailing slash, with a relative
    C{Location} (the last segment plus C{/}) so that prefixes added by proxies
    in front survive.
    """
    parts = urlsplit(request.uri.decode("latin-1"))
    last = parts.path.rsplit("/", 1)[-1]
    location = f"./{last}/" + (f"?{parts.query}" if parts.query else "")
    request.responseHeaders.setRawHeaders(b"location", [location.encode("latin-1")])
    plainResponse(request, 301, "")


def _matchesETag(request: Any, etag: str) -> bool:
    values = request.requestHeaders.getRawHeaders(b"if-none-match") or []
    for value in values:
        for candidate in value.decode("latin-1").split(","):
            candidate = candidate.strip()
            if candidate.startswith("W/"):
                candidate = candidate[2:]
            if candidate in (etag, "*"):
                return True
    return False


def dashboardService(context: BuildContext, state: Mapping[str, Any]) -> DashboardHandler:
    """
    The C{dashboard@internal} handler (C{api@internal} hands it
    C{/dashboard/...} too).
    """
    return DashboardHandler(sharedAssets())
