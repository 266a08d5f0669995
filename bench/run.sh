#!/bin/sh
# The benchmark, one command: build --release, then every BENCH.md scenario,
# three runs, with the pg_recvlogical ceiling and the naive Python peer.
# Figures land in bench/out/ (table.md, run-N.json, latency-run-N.{csv,svg}).
set -eu
cd "$(dirname "$0")/.."
venv=target/test-venv
if [ ! -f "$venv/.walhook-ready" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r tests/py/requirements.txt
    echo ok > "$venv/.walhook-ready"
fi
cargo build --release --locked --bin walhook --bin walhook-bench
exec target/release/walhook-bench --python "$venv/bin/python" --runs "${RUNS:-3}" "$@"
