#!/usr/bin/env bash
# Installs kinesalite (npm, into target/kinesalite) if missing, builds the release
# binary, and runs bench/kinesis_vs_kinesalite.py: the same boto3 client against
# Kinescope and kinesalite in one run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup test
if [ ! -x target/kinesalite/node_modules/.bin/kinesalite ]; then
  mkdir -p target/kinesalite
  (cd target/kinesalite && npm install --silent --no-audit --no-fund kinesalite@3 >/dev/null)
fi
cargo build --release --quiet --bin kinescope
exec .venv/bin/python bench/kinesis_vs_kinesalite.py "$@"
