#!/bin/sh
# Installs everything relayd's test suite needs on a fresh Debian machine
# (system packages when apt-get is available and we are root, then the Python
# packages), so that `python3 -b -m twisted.trial --random=0 tests` can run.
set -eu
cd "$(dirname "$0")/.."

if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends curl ca-certificates >/dev/null
fi

python3 -m pip install -q --disable-pip-version-check "setuptools>=64" wheel
python3 -m pip install -q --disable-pip-version-check -e ".[test]"
