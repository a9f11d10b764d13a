#!/usr/bin/env bash
# The cluster backend (1, 2, 3 nodes on PostgreSQL + moto's S3) against the embedded
# default in one run: builds the release binary and runs bench/cluster_nodes.py.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup test
cargo build --release --quiet --bin kinescope
exec .venv/bin/python bench/cluster_nodes.py "$@"
