#!/usr/bin/env bash
# Live delay of the watch page: an RTSP camera (ffmpeg, real time, x264 zerolatency, 1 s
# GOP) publishing into Kinescope, played LIVE in headless Chromium with hls.js, the delay
# sampled every 250 ms for SECONDS per round. Two figures per sample: the page's measured
# delay (now minus the arrival at the server of the frame showing: its fragment's
# ServerTimestamp plus the frame's offset in it) and hls.js's own estimate. Each round
# opens a new page; the figures are set against the fragment duration, the unit below
# which plain HLS cannot go. Then, the same camera watched over WHEP (frames from the
# stream's live bus): the browser's jitter-buffer delay per frame, the part of a WebRTC
# viewer's delay we can read without a clock burned into the frames (the server forwards
# each frame as it is muxed).
#
#   bench/live_delay.sh          (ROUNDS=3 SECONDS=20 to change)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-3}"
SECONDS_PER_ROUND="${SECONDS:-20}"

scripts/setup test >/dev/null
. bench/lib.sh
bench_start delay

port=$(free_port); rport=$(free_port)
"$BIN" serve --data-dir "$work/data" --http "127.0.0.1:$port" --rtsp "127.0.0.1:$rport" --rtsp-create-streams \
  2>"$work/server.log" &
pids+=($!)
base="http://127.0.0.1:$port"
for _ in $(seq 100); do curl -sf "$base/health" >/dev/null && break; sleep 0.1; done
curl -sf -X POST "$base/createStream" -d '{"StreamName":"cam","DataRetentionInHours":24}' >/dev/null

echo "[1/2] an RTSP camera: ffmpeg testsrc2 640x360 at 25 fps, real time, 1 s GOP…" >&2
ffmpeg -v error -re -f lavfi -i testsrc2=size=640x360:rate=25 -c:v libx264 -preset ultrafast -tune zerolatency \
  -g 25 -keyint_min 25 -sc_threshold 0 -b:v 1M -f rtsp -rtsp_transport tcp "rtsp://127.0.0.1:$rport/cam" \
  2>"$work/ffmpeg.log" &
pids+=($!)
sleep 4

echo "[2/2] $ROUNDS rounds of $SECONDS_PER_ROUND s of LIVE HLS in Chromium…" >&2
for r in $(seq "$ROUNDS"); do
  (cd web && node tests/play.mjs --url "$base/?stream=cam&player=hls&mode=LIVE&autoplay=1" \
    --screenshot "$work/round$r.png" --advance 1 --timeout 40 --sample "$SECONDS_PER_ROUND") \
    > "$work/round$r.json" || { echo "round $r did not play" >&2; cat "$work/round$r.json" >&2; exit 1; }
done

for r in $(seq "$ROUNDS"); do
  (cd web && node tests/whep.mjs --url "$base" --stream cam --sample "$SECONDS_PER_ROUND") > "$work/whep$r.json" \
    || { echo "WHEP round $r did not play" >&2; cat "$work/whep$r.json" >&2; exit 1; }
done

python3 - "$work" "$ROUNDS" <<'EOF'
import json, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
fragment_s = 1.0
rows = []
for r in range(1, rounds + 1):
    report = json.loads(open(f"{work}/round{r}.json").read().strip().splitlines()[-1])
    measured = sorted(d["measured"] for d in report["delays"] if d["measured"] is not None)
    estimate = sorted(d["estimate"] for d in report["delays"] if d["estimate"])
    p = lambda v, q: v[min(len(v) - 1, int(q * (len(v) - 1) + 0.5))]
    rows.append((statistics.median(measured), p(measured, 0.9), statistics.median(estimate) if estimate else float("nan"),
                 len(measured)))
print("live delay, LIVE HLS in Chromium (hls.js defaults), RTSP camera at 25 fps with 1 s GOPs")
print("| round | measured p50 | measured p90 | hls.js estimate p50 | samples | p50 / fragment duration |")
print("|---|---|---|---|---|---|")
for i, (m50, m90, e50, n) in enumerate(rows, 1):
    print(f"| {i} | {m50:.2f} s | {m90:.2f} s | {e50:.2f} s | {n} | {m50 / fragment_s:.2f} |")
meds = sorted(r[0] for r in rows)
print(f"median of the rounds' p50: {statistics.median(meds):.2f} s (spread {meds[0]:.2f}-{meds[-1]:.2f}),"
      f" {statistics.median(meds) / fragment_s:.2f} fragment durations")
buffers = []
for r in range(1, rounds + 1):
    report = json.loads(open(f"{work}/whep{r}.json").read().strip().splitlines()[-1])
    b = [d["buffer"] for d in report["delays"] if d["buffer"] is not None]
    buffers.append(statistics.median(b))
    print(f"WHEP round {r}: jitter buffer p50 {statistics.median(b):.1f} ms over {len(b)} samples, "
          f"{report['framesDecoded']} frames decoded")
buffers.sort()
print(f"WHEP from the live bus, browser jitter buffer: {statistics.median(buffers):.1f} ms "
      f"(spread {buffers[0]:.1f}-{buffers[-1]:.1f}), {statistics.median(buffers) / 1000 / fragment_s:.3f} fragment durations")
EOF
