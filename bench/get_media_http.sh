#!/usr/bin/env bash
# Matroska against fragmented MP4 over HTTP, on the same server in the same run,
# interleaved: GetMediaForFragmentList of every fragment of 120 s of 640x360 H.264 +
# AAC, answered in Matroska (the default, as Kinesis Video answers) and in fMP4
# (`Accept: video/mp4`), read by curl; then HLS segments served as fMP4 (the stored
# bytes) and as MPEG-TS (cut per request), by h2load over HTTP/1.1. Prints each
# round and the medians with their spreads.
#
#   bench/get_media_http.sh        (ROUNDS=5 REPEAT=10 REQUESTS=20000 CLIENTS=16 to change)
#
# Installs h2load (Debian's nghttp2-client) if missing; builds the release binary.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-5}"
REPEAT="${REPEAT:-10}"
REQUESTS="${REQUESTS:-20000}"
CLIENTS="${CLIENTS:-16}"

scripts/setup run
. bench/lib.sh
ensure_h2load
bench_start get-media-http

start_server

echo "[1/3] 120 s of media into a stream…" >&2
ffmpeg -v error -f lavfi -i testsrc2=size=640x360:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 120 \
  -c:v libx264 -preset ultrafast -g 25 -keyint_min 25 -sc_threshold 0 -b:v 1500k -pix_fmt yuv420p -c:a aac \
  -movflags frag_keyframe+empty_moov+default_base_moof "$work/camera.mp4"
curl -sf -X POST "$base/createStream" -d '{"StreamName":"cam","DataRetentionInHours":24}' >/dev/null
"$BIN" put --endpoint "$base" --stream cam "$work/camera.mp4" >/dev/null 2>&1
sleep 1
curl -sf -X POST "$base/listFragments" -d '{"StreamName":"cam","MaxResults":1000}' |
  python3 -c 'import json,sys; print(json.dumps({"StreamName":"cam","Fragments":sorted(
    (f["FragmentNumber"] for f in json.load(sys.stdin)["Fragments"]), key=int)}))' > "$work/list.json"
fragments=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["Fragments"]))' "$work/list.json")
now=$(date +%s)
url=$(curl -sf -X POST "$base/getHLSStreamingSessionURL" -d "{\"StreamName\":\"cam\",\"PlaybackMode\":\"ON_DEMAND\",
  \"ContainerFormat\":\"MPEG_TS\",\"HLSFragmentSelector\":{\"FragmentSelectorType\":\"SERVER_TIMESTAMP\",
  \"TimestampRange\":{\"StartTimestamp\":$((now - 600)),\"EndTimestamp\":$now}}}" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["HLSStreamingSessionURL"])')
media=$(curl -sf "$url" | grep -v '^#' | head -1)
ts="$base/hls/v1/$(curl -sf "$base/hls/v1/$media" | grep '^getTSFragment' | sed -n 5p)"
mp4="${ts/getTSFragment.ts/getMP4MediaFragment.mp4}"
ts_bytes=$(curl -sf "$ts" | wc -c)
mp4_bytes=$(curl -sf "$mp4" | wc -c)

get_media() { # ACCEPT -> "bytes seconds" of REPEAT GetMediaForFragmentList calls
  local bytes=0 secs=0 out
  for _ in $(seq "$REPEAT"); do
    out=$(curl -sf -X POST "$base/getMediaForFragmentList" -H "Accept: $1" --data-binary "@$work/list.json" \
      -o /dev/null -w '%{size_download} %{time_total}')
    bytes=$((bytes + ${out% *}))
    secs=$(python3 -c "print($secs + ${out#* })")
  done
  echo "$bytes $secs"
}
rate() { h2load "$@" 2>/dev/null | awk '/^finished in/ {gsub(",", "", $4); print $4}'; }

echo "[2/3] $ROUNDS interleaved rounds…" >&2
for r in $(seq "$ROUNDS"); do
  if [ $((r % 2)) -eq 1 ]; then order="video/webm video/mp4"; else order="video/mp4 video/webm"; fi
  for accept in $order; do
    echo "get $r $accept $(get_media "$accept")" | tee -a "$work/rounds.txt" >&2
  done
  echo "seg $r $(rate --h1 -n "$REQUESTS" -c "$CLIENTS" "$mp4") $(rate --h1 -n "$REQUESTS" -c "$CLIENTS" "$ts")" |
    tee -a "$work/rounds.txt" >&2
done

echo "[3/3] summary" >&2
python3 - "$work/rounds.txt" "$fragments" "$REPEAT" "$mp4_bytes" "$ts_bytes" <<'PY'
import statistics as st, sys
rows = [l.split() for l in open(sys.argv[1])]
fragments, repeat = int(sys.argv[2]), int(sys.argv[3])
f = lambda xs, p=0: f"{st.median(xs):,.{p}f} ({min(xs):,.{p}f}–{max(xs):,.{p}f})"
mb = {a: [int(r[3]) / float(r[4]) / 1e6 for r in rows if r[0] == "get" and r[2] == a] for a in ("video/webm", "video/mp4")}
fr = {a: [fragments * repeat / float(r[4]) for r in rows if r[0] == "get" and r[2] == a] for a in mb}
ratio = [a / b for a, b in zip(fr["video/webm"], fr["video/mp4"])]
print(f"GetMediaForFragmentList of {fragments} fragments ×{repeat} per round, curl over HTTP/1.1:")
print("| answer | MB/s median (min–max) | fragments/s median (min–max) |")
print("|---|---|---|")
print(f"| Matroska (video/webm) | {f(mb['video/webm'])} | {f(fr['video/webm'])} |")
print(f"| fMP4 (Accept: video/mp4) | {f(mb['video/mp4'])} | {f(fr['video/mp4'])} |")
print(f"Matroska ÷ fMP4 fragments/s: {st.median(ratio):.2f} ({min(ratio):.2f}–{max(ratio):.2f})")
seg = [r for r in rows if r[0] == "seg"]
m, t = [float(r[2]) for r in seg], [float(r[3]) for r in seg]
print(f"HLS segment, fMP4 ({int(sys.argv[4]):,} bytes, stored) {f(m)} req/s; MPEG-TS ({int(sys.argv[5]):,} bytes, "
      f"cut per request) {f(t)} req/s; TS ÷ fMP4 {st.median([b / a for a, b in zip(m, t)]):.2f} "
      f"({min(b / a for a, b in zip(m, t)):.2f}–{max(b / a for a, b in zip(m, t)):.2f})")
PY
