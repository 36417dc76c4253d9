"""
relayd: an edge router and reverse proxy on Twisted that speaks Traefik's
configuration language.
"""

import re

from setuptools import find_packages, setup

with open("relayd/__init__.py", encoding="utf-8") as f:
    version = re.search(r'__version__ = "([^"]+)"', f.read()).group(1)

with open("README.rst", encoding="utf-8") as f:
    readme = f.read()

setup(
    name="relayd",
    version=version,
    description="An edge router and reverse proxy on Twisted that reads Traefik's configuration",
    long_description=readme,
    long_description_content_type="text/x-rst",
    license="MIT",
    python_requires=">=3.11",
    packages=find_packages(include=["relayd", "relayd.*"]) + ["twisted.plugins"],
    # The dashboard's files (relayd/api/webui) ship in the wheel and the sdist.
    package_data={"twisted": ["plugins/relayd_plugin.py"], "relayd.api": ["webui/*"]},
    install_requires=[
        "twisted[tls]>=24.3",
        "autobahn>=24.4",
        "pyopenssl>=24",
        "service-identity>=24",
        "zope.interface>=6",
        "attrs>=23.1",
        "pyyaml>=6",
        # HTTP/2 toward clients (ALPN h2 on TLS entrypoints).
        "h2>=4.1",
        # The basicAuth middleware's bcrypt hashes.
        "bcrypt>=4.1",
        # metrics.prometheus: the metric types and the exposition format.
        "prometheus_client>=0.20",
    ],
    extras_require={
        "test": [
            "hypothesis>=6.100",
            # An independent WebSocket peer (client and server) for the relay's tests.
            "websockets>=13",
        ],
    },
    entry_points={"console_scripts": ["relayd = relayd.cli:main"]},
    classifiers=[
        "Framework :: Twisted",
        "Programming Language :: Python :: 3",
        "Topic :: Internet :: Proxy Servers",
    ],
)
