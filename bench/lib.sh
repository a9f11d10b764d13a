# What the shell benchmarks share; sourced, not run. After `bench_start NAME`: $BIN is the
# release server binary, $work a scratch directory removed at exit, and every process
# whose pid is added to `pids` is killed at exit. `free_port` prints a 127.0.0.1 port
# free right now.
bench_start() {
  cargo build --release --quiet --bin kinescope
  BIN="$PWD/target/release/kinescope"
  work=$(mktemp -d "${TMPDIR:-/tmp}/kinescope-$1.XXXXXX")
  pids=()
  trap bench_cleanup EXIT
}
bench_cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# h2load (Debian's nghttp2-client), installed if missing.
ensure_h2load() {
  if ! command -v h2load >/dev/null; then
    echo "bench: installing nghttp2-client (h2load)" >&2
    local sudo_cmd=(); [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nghttp2-client >/dev/null
  fi
}
# The release server on a free loopback port, in anonymous mode; sets $base.
start_server() {
  local port; port=$(free_port)
  "$BIN" serve --data-dir "$work/data" --http "127.0.0.1:$port" --rtsp 127.0.0.1:0 2>"$work/server.log" &
  pids+=($!)
  base="http://127.0.0.1:$port"
  for _ in $(seq 100); do curl -sf "$base/health" >/dev/null && break; sleep 0.1; done
}
# Pushes MP4 into a new stream NAME with `kinescope put` (retention 24 h).
put_stream() {
  curl -sf -X POST "$base/createStream" -d "{\"StreamName\":\"$1\",\"DataRetentionInHours\":24}" >/dev/null
  "$BIN" put --endpoint "$base" --stream "$1" "$2" >/dev/null 2>&1
  sleep 1
}
# The URL of the Nth fMP4 media segment (default the first) of an ON_DEMAND HLS session
# over the last ten minutes of stream NAME.
hls_segment() {
  local now url media
  now=$(date +%s)
  url=$(curl -sf -X POST "$base/getHLSStreamingSessionURL" -d "{\"StreamName\":\"$1\",\"PlaybackMode\":\"ON_DEMAND\",
    \"HLSFragmentSelector\":{\"FragmentSelectorType\":\"SERVER_TIMESTAMP\",
    \"TimestampRange\":{\"StartTimestamp\":$((now - 600)),\"EndTimestamp\":$now}}}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["HLSStreamingSessionURL"])')
  media=$(curl -sf "$url" | grep -v '^#' | head -1)
  echo "$base/hls/v1/$(curl -sf "$base/hls/v1/$media" | grep '^getMP4MediaFragment' | sed -n "${2:-1}p")"
}
