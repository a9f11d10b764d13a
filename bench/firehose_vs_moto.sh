#!/usr/bin/env bash
# Installs moto's server into the test venv if missing, builds the release binary, and
# runs bench/firehose_vs_moto.py (Kinescope against moto, same boto3 client, same run).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup test
[ -x .venv/bin/moto_server ] || .venv/bin/pip install -q --disable-pip-version-check "moto[server]==5.*"
cargo build --release --quiet --bin kinescope
exec .venv/bin/python bench/firehose_vs_moto.py "$@"
