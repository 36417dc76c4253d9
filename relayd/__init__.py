"""
relayd: an edge router and reverse proxy on Twisted that speaks Traefik's
configuration language.
"""

__version__ = "0.1.0"
