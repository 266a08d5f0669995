#!/bin/sh
# The benchmark, one command: build --release, then every BENCH.md scenario,
# three runs, with its references (write rate with walhook stopped, the
# pg_recvlogical ceiling, the naive Python peer) and CPU per event.
# Figures land in bench/out/ (table.md, run-N.json, latency-run-N.{csv,svg}).
# Extra arguments go to walhook-bench, e.g. to compare two builds in one run:
#   bench/run.sh --walhook-bin before=/work/walhook-before --walhook-bin after=target/release/walhook
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
