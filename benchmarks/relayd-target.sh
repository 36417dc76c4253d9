#!/bin/sh
# Starts relayd as a benchmark target: listen on 127.0.0.1:PORT and send every
# request to http://UPSTREAM_HOST:UPSTREAM_PORT.  Extra arguments go to twistd
# (for example --workers 2 once workers exist).
#   benchmarks/relayd-target.sh PORT UPSTREAM_HOST UPSTREAM_PORT [twistd args]
#
# Environment:
#   PYTHON            interpreter that runs twistd (default python3), e.g. pypy3
#   RELAYD_BENCH_DIR  where to write the two TOML files (created if missing);
#                     otherwise $PB_WORKDIR/relayd-PORT when run by proxybench
#                     (removed with its workdir), else a new mktemp directory
#   PYTHONPATH        searched first; the checkout holding this script is
#                     appended, so its relayd package and its twisted/plugins
#                     (the "relayd" twistd plugin) are found by any interpreter
#
# The script execs the interpreter, so its PID is relayd's PID.
set -eu
if [ $# -lt 3 ]; then
    echo "usage: $0 PORT UPSTREAM_HOST UPSTREAM_PORT [twistd args]" >&2
    exit 2
fi
port=$1 host=$2 upstream=$3
shift 3
if [ -n "${RELAYD_BENCH_DIR:-}" ]; then
    dir=$RELAYD_BENCH_DIR
    mkdir -p "$dir"
elif [ -n "${PB_WORKDIR:-}" ] && [ -d "$PB_WORKDIR" ]; then
    dir=$PB_WORKDIR/relayd-$port
    mkdir -p "$dir"
else
    dir=$(mktemp -d "${TMPDIR:-/tmp}/relayd-bench.XXXXXX")
fi
cat > "$dir/relayd.toml" <<TOML
[log]
level = "ERROR"
[entryPoints.web]
address = "127.0.0.1:$port"
[providers.file]
filename = "$dir/dynamic.toml"
TOML
cat > "$dir/dynamic.toml" <<TOML
[http.routers.bench]
rule = "PathPrefix(\`/\`)"
service = "origin"
[[http.services.origin.loadBalancer.servers]]
url = "http://$host:$upstream"
TOML
here=$(cd "$(dirname "$0")/.." && pwd)
PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$here
export PYTHONPATH
cd "$dir"
exec "${PYTHON:-python3}" -c "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()" --pidfile= -n relayd --config "$dir/relayd.toml" "$@"
