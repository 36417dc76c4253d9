#!/bin/sh
# Starts relayd as a benchmark target: listen on 127.0.0.1:PORT and send every
# request to http://UPSTREAM_HOST:UPSTREAM_PORT.
#   benchmarks/relayd-target.sh PORT UPSTREAM_HOST UPSTREAM_PORT [relayd args]
#
# relayd reads its static configuration from the file this script writes, so
# static flags given as extra arguments (--workers=2, --log.level=INFO) are
# ignored, as in Traefik (one source only); use the variables below instead.
#
# Environment:
#   PYTHON            interpreter that runs twistd (default python3), e.g. pypy3
#   BENCH_WORKERS     relayd's static "workers" key (processes sharing the port)
#   BENCH_STATIC_TOML more static TOML, written at the top of the static file
#   BENCH_DYNAMIC_TOML more dynamic TOML, appended to the dynamic file, which
#                     has the router "bench" and the service "origin"
#                     (benchmarks/tls.py adds a TLS router and a certificate)
#   BENCH_CONFIG_DIR  where to write the two TOML files (created if missing);
#                     otherwise $PB_WORKDIR/relayd-PORT when run by proxybench
#                     (removed with its workdir), else a new mktemp directory
#   PYTHONPATH        searched first; the checkout holding this script is
#                     appended, so its relayd package and its twisted/plugins
#                     (the "relayd" twistd plugin) are found by any interpreter
#
# The script execs the interpreter, so its PID is relayd's PID (the first
# process, which supervises any workers; all of them stay in its session).
set -eu
if [ $# -lt 3 ]; then
    echo "usage: $0 PORT UPSTREAM_HOST UPSTREAM_PORT [relayd args]" >&2
    exit 2
fi
port=$1 host=$2 upstream=$3
shift 3
if [ -n "${BENCH_CONFIG_DIR:-}" ]; then
    dir=$BENCH_CONFIG_DIR
    mkdir -p "$dir"
elif [ -n "${PB_WORKDIR:-}" ] && [ -d "$PB_WORKDIR" ]; then
    dir=$PB_WORKDIR/relayd-$port
    mkdir -p "$dir"
else
    dir=$(mktemp -d "${TMPDIR:-/tmp}/relayd-bench.XXXXXX")
fi
{
if [ -n "${BENCH_WORKERS:-}" ]; then
    echo "workers = $BENCH_WORKERS"
fi
if [ -n "${BENCH_STATIC_TOML:-}" ]; then
    printf '%s\n' "$BENCH_STATIC_TOML"
fi
cat <<TOML
[log]
level = "ERROR"
[entryPoints.web]
address = "127.0.0.1:$port"
[providers.file]
filename = "$dir/dynamic.toml"
TOML
} > "$dir/relayd.toml"
cat > "$dir/dynamic.toml" <<TOML
[http.routers.bench]
rule = "PathPrefix(\`/\`)"
service = "origin"
[[http.services.origin.loadBalancer.servers]]
url = "http://$host:$upstream"
TOML
if [ -n "${BENCH_DYNAMIC_TOML:-}" ]; then
    printf '%s\n' "$BENCH_DYNAMIC_TOML" >> "$dir/dynamic.toml"
fi
here=$(cd "$(dirname "$0")/.." && pwd)
PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$here
export PYTHONPATH
cd "$dir"
exec "${PYTHON:-python3}" -c "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()" --pidfile= -n relayd --config "$dir/relayd.toml" "$@"
