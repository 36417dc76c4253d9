"""
The twistd plugin: C{twistd -n relayd --config relayd.toml}.
"""

from twisted.application.service import ServiceMaker

relayd = ServiceMaker(
    "relayd",
    "relayd.tap",
    "An edge router and reverse proxy that speaks Traefik's configuration language.",
    "relayd",
)
