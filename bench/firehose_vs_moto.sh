#!/usr/bin/env bash
# Installs moto's server into the test venv if missing, builds the release binary, and
# runs bench/firehose_vs_moto.py (Kinescope against moto, same boto3 client, same run, and
# the ceiling: nginx answering at once). ANATOMY=1 also runs bench/firehose_call_anatomy.py.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup test
[ -x .venv/bin/moto_server ] || .venv/bin/pip install -q --disable-pip-version-check "moto[server]==5.*"
# nginx plays the instant server (the ceiling a client reaches).
if ! command -v nginx >/dev/null 2>&1 && ! [ -x /usr/sbin/nginx ]; then
  echo "bench: installing nginx-light" >&2
  sudo_cmd=(); [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx-light >/dev/null
fi
export PATH="$PATH:/usr/sbin"
cargo build --release --quiet --bin kinescope
.venv/bin/python bench/firehose_vs_moto.py "$@"
if [ "${ANATOMY:-0}" = 1 ]; then .venv/bin/python bench/firehose_call_anatomy.py; fi
