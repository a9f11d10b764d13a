#!/usr/bin/env bash
# HLS segment serving under load: Kinescope against nginx serving the very same bytes
# from files, in the same run, with wrk (64 connections), interleaved: ROUNDS rounds of
# Kinescope then nginx. Prints each round's requests/s and MB/s, and the median ratio
# with its spread.
#
#   bench/serve_segments.sh            (DURATION=10 CONNECTIONS=64 ROUNDS=3 to change)
#
# Installs wrk and nginx (Debian packages) if missing; builds the release binary.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-64}"
ROUNDS="${ROUNDS:-3}"

scripts/setup run
missing=()
for p in wrk nginx-light ffmpeg; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bench: installing ${missing[*]}" >&2
  sudo_cmd=(); [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
. bench/lib.sh
bench_start bench

echo "[1/4] a 2 Mbit/s 720p camera, 20 s with a 1 s GOP…" >&2
ffmpeg -v error -f lavfi -i testsrc2=size=1280x720:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 20 \
  -c:v libx264 -preset veryfast -b:v 2M -maxrate 2M -bufsize 2M -g 25 -keyint_min 25 -sc_threshold 0 \
  -c:a aac -b:a 64k -movflags frag_keyframe+empty_moov+default_base_moof "$work/camera.mp4"

echo "[2/4] Kinescope, twice: with its recent-fragment cache (the default) and without; ingest, then an ON_DEMAND HLS session…" >&2
kinescope_side() { # name recent_fragments_mb -> $work/NAME.base, $work/NAME.paths
  local name=$1 port
  port=$(free_port)
  printf '[limits]\nrecent_fragments_mb = %s\n' "$2" > "$work/$name.toml"
  "$BIN" serve --config "$work/$name.toml" --data-dir "$work/$name" --http "127.0.0.1:$port" --rtsp 127.0.0.1:0 \
    2>"$work/$name.log" &
  pids+=($!)
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
  local base="http://127.0.0.1:$port"
  echo "$base" > "$work/$name.base"
  curl -sf -X POST "$base/createStream" -d '{"StreamName":"bench","DataRetentionInHours":24}' >/dev/null
  "$BIN" put --endpoint "$base" --stream bench "$work/camera.mp4" >/dev/null 2>&1
  sleep 1
  local now url media
  now=$(date +%s)
  url=$(curl -sf -X POST "$base/getHLSStreamingSessionURL" -d "{\"StreamName\":\"bench\",\"PlaybackMode\":\"ON_DEMAND\",
    \"HLSFragmentSelector\":{\"FragmentSelectorType\":\"SERVER_TIMESTAMP\",
    \"TimestampRange\":{\"StartTimestamp\":$((now - 600)),\"EndTimestamp\":$now}}}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["HLSStreamingSessionURL"])')
  media=$(curl -sf "$url" | grep -v '^#' | head -1)
  curl -sf "$base/hls/v1/$media" | grep '^getMP4MediaFragment' | sed 's|^|/hls/v1/|' > "$work/$name.paths"
}
kinescope_side cached 128
kinescope_side uncached 0
base=$(cat "$work/cached.base")
sed 's|^/hls/v1/||' "$work/cached.paths" > "$work/segments.txt"
count=$(wc -l < "$work/segments.txt")

echo "[3/4] the same $count segments as files under nginx…" >&2
mkdir -p "$work/www"
chmod 755 "$work"  # nginx workers run as an unprivileged user
: > "$work/nginx.paths"
i=0
while read -r seg; do
  i=$((i + 1))
  curl -sf "$base/hls/v1/$seg" -o "$work/www/seg$i.mp4"
  chmod 644 "$work/www/seg$i.mp4"
  echo "/seg$i.mp4" >> "$work/nginx.paths"
done < "$work/segments.txt"
bytes=$(cat "$work"/www/*.mp4 | wc -c)
nport=$(free_port)
cat > "$work/nginx.conf" <<EOF
worker_processes auto;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on; tcp_nopush on; keepalive_requests 1000000;
  types { video/mp4 mp4; }
  client_body_temp_path $work/nginx-body; proxy_temp_path $work/nginx-proxy;
  fastcgi_temp_path $work/nginx-fcgi; uwsgi_temp_path $work/nginx-uwsgi; scgi_temp_path $work/nginx-scgi;
  server { listen 127.0.0.1:$nport; root $work/www; }
}
EOF
nginx -c "$work/nginx.conf" -g 'daemon off;' &
pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$nport/seg1.mp4" -o /dev/null && break; sleep 0.1; done

cat > "$work/rotate.lua" <<'EOF'
local paths = {}
for line in io.lines(os.getenv("PATHS_FILE")) do paths[#paths + 1] = line end
local i = math.random(#paths)
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
EOF

echo "[4/4] wrk -c$CONNECTIONS -d${DURATION}s against each…" >&2
run_wrk() { # url paths-file -> "requests/s MB/s"
  PATHS_FILE="$2" wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" -s "$work/rotate.lua" "$1" > "$work/wrk.out"
  python3 - "$work/wrk.out" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
m = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", text)
mult = {"B": 1e-6, "KB": 1024 / 1e6, "MB": 1024**2 / 1e6, "GB": 1024**3 / 1e6}[m.group(2)]
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
print(f"{rps:.0f} {float(m.group(1)) * mult:.1f} {errors.group(1) if errors else 0}")
EOF
}
# PERF_RECORD=file records the server's profile during its run (perf report -i file).
if [ -n "${PERF_RECORD:-}" ]; then
  perf record -g -o "$PERF_RECORD" -p "${pids[0]}" -- sleep "$DURATION" >/dev/null 2>&1 &
fi
avg=$((bytes / count))
echo
echo "segment serving: $count segments, $((avg / 1024)) KiB average, $CONNECTIONS connections, ${DURATION}s each, $(nproc) CPUs, $ROUNDS rounds"
echo "| round | kinescope req/s | MB/s | without its cache req/s | MB/s | nginx (same bytes, sendfile) req/s | MB/s | errors k/u/n | ratio | ratio without cache |"
echo "|---|---|---|---|---|---|---|---|---|---|"
ratios=(); uncached=()
for r in $(seq "$ROUNDS"); do
  read -r k_rps k_mbs k_err < <(run_wrk "$base" "$work/cached.paths")
  read -r u_rps u_mbs u_err < <(run_wrk "$(cat "$work/uncached.base")" "$work/uncached.paths")
  read -r n_rps n_mbs n_err < <(run_wrk "http://127.0.0.1:$nport" "$work/nginx.paths")
  ratio=$(python3 -c "print(f'{$k_rps/$n_rps:.2f}')")
  uratio=$(python3 -c "print(f'{$u_rps/$n_rps:.2f}')")
  ratios+=("$ratio"); uncached+=("$uratio")
  echo "| $r | $k_rps | $k_mbs | $u_rps | $u_mbs | $n_rps | $n_mbs | $k_err/$u_err/$n_err | $ratio | $uratio |"
done
python3 -c "
import statistics, sys
n = len(sys.argv) // 2
for name, vals in (('with the cache', sys.argv[1:n + 1]), ('without it', sys.argv[n + 1:])):
    r = sorted(float(x) for x in vals)
    print(f'median ratio kinescope/nginx (requests/s), {name}: {statistics.median(r):.2f} (spread {r[0]:.2f}-{r[-1]:.2f})')
" "${ratios[@]}" "${uncached[@]}"
