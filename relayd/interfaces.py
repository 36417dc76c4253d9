"""
relayd's extension points, as zope interfaces: what handles an HTTP request,
and what a provider is.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface


class IHTTPHandler(Interface):
    """
    Something that answers an HTTP request: a service, an internal service, or a
    middleware wrapping the next handler.
    """

    def handle(request):  # type: ignore[no-untyped-def]
        """
        Answer C{request} (a L{twisted.web.server.Request} carrying relayd's
        C{relayd} attribute), now or later; errors are answered, never raised.
        """


class IProvider(Interface):
    """
    A source of dynamic configuration, run as a Twisted service, that hands
    L{relayd.providers.base.ProviderUpdate}s to its sink.
    """

    providerName = Attribute("The name used after '@' for this provider's objects.")

    def startService():  # type: ignore[no-untyped-def]
        """
        Start producing configuration.
        """

    def stopService():  # type: ignore[no-untyped-def]
        """
        Stop; may return a Deferred.
        """
