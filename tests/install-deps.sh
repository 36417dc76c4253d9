#!/bin/sh
# Installs everything relayd's test suite needs on a fresh Debian machine
# (system packages when apt-get is available and we are root, then the Python
# packages, then the node packages of tests/node for the socket.io tests), so
# that `python3 -b -m twisted.trial --random=0 tests` can run.
set -eu
cd "$(dirname "$0")/.."

if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # chromium (with a font for its screenshots) runs the dashboard test in
    # tests/test_dashboard.py, through playwright-core from tests/node.
    packages="curl ca-certificates openssl docker.io busybox-static chromium fonts-dejavu-core"
    if ! command -v node >/dev/null 2>&1; then
        packages="$packages nodejs"
    fi
    if ! command -v npm >/dev/null 2>&1; then
        packages="$packages npm"
    fi
    # Word splitting of $packages is intended.
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $packages >/dev/null
fi

python3 -m pip install -q --disable-pip-version-check "setuptools>=64" wheel
python3 -m pip install -q --disable-pip-version-check -e ".[test]"

# socket.io v4 server and client for tests/test_socketio.py, and playwright-core
# for tests/test_dashboard.py (skipped without them, failed when CI=true).
# playwright-core downloads no browser: the test uses Debian's chromium.
if command -v npm >/dev/null 2>&1; then
    if [ -f tests/node/package-lock.json ]; then
        npm ci --prefix tests/node --no-audit --no-fund --loglevel=error
    else
        npm install --prefix tests/node --no-audit --no-fund --loglevel=error
    fi
else
    echo "install-deps.sh: npm is not available; the socket.io tests will not run" >&2
fi
