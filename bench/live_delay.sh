#!/usr/bin/env bash
# Live delay of the watch page: an RTSP camera (ffmpeg, real time, x264 zerolatency, 1 s
# GOP) publishing into Kinescope, played LIVE in headless Chromium with hls.js — plain
# HLS and Low-Latency HLS (200 ms parts) in turn, interleaved round by round — the delay
# sampled every 250 ms for ROUND_SECONDS per round. Glass to glass: ffmpeg burns the capture
# time into each frame (16 black/white blocks and their complement, top left; see
# web/tests/browser.mjs), and the browser reads it back from the frame it presents
# (requestVideoFrameCallback): now minus that time, the whole path from the camera's
# capture through x264, RTSP, Kinescope and the player to the screen. Two more figures
# per HLS sample: the page's measured
# delay (now minus the arrival at the server of the frame showing: its fragment's
# ServerTimestamp plus the frame's offset in it) and hls.js's own estimate. Each round
# opens a new page; the figures are set against the fragment duration, the unit below
# which plain HLS cannot go. Then, the same camera watched over WHEP (frames from the
# stream's live bus): the browser's jitter-buffer delay per frame, the part of a WebRTC
# viewer's delay we can read without a clock burned into the frames (the server forwards
# each frame as it is muxed). Last, WHIP to WHEP: a second page publishes a canvas with
# the clock drawn in (web/src/publish.js, `source=clock`) over WHIP, and a WHEP viewer in
# another browser reads it back.
#
#   bench/live_delay.sh          (ROUNDS=3 ROUND_SECONDS=20 to change)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-3}"
SECONDS_PER_ROUND="${ROUND_SECONDS:-20}"

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

# The capture time in ms modulo 65,536, bit b white in block b of the first row and black in
# the second: timestamps are the wall clock (RTCTIME) while the boxes are drawn, then
# renumbered from 0 for the encoder.
clock="settb=AVTB,setpts=RTCTIME,drawbox=x=0:y=0:w=384:h=48:color=black:t=fill"
for b in $(seq 0 15); do
  bit="mod(floor(mod(floor(t*1000)\,65536)/$((1 << b)))\,2)"
  clock="$clock,drawbox=x=$((b * 24)):y=0:w=24:h=24:color=white:t=fill:enable='eq($bit\,1)'"
  clock="$clock,drawbox=x=$((b * 24)):y=24:w=24:h=24:color=white:t=fill:enable='eq($bit\,0)'"
done
clock="$clock,setpts=N/FRAME_RATE/TB"

echo "[1/2] an RTSP camera: ffmpeg testsrc2 640x360 at 25 fps, real time, 1 s GOP, a clock burned in…" >&2
ffmpeg -v error -re -f lavfi -i testsrc2=size=640x360:rate=25 -vf "$clock" -c:v libx264 -preset ultrafast -tune zerolatency \
  -g 25 -keyint_min 25 -sc_threshold 0 -b:v 1M -f rtsp -rtsp_transport tcp "rtsp://127.0.0.1:$rport/cam" \
  2>"$work/ffmpeg.log" &
pids+=($!)
curl -sf -X POST "$base/createStream" -d '{"StreamName":"clock","DataRetentionInHours":24}' >/dev/null
echo "      and a browser publishing a clock canvas over WHIP…" >&2
node web/tests/whip.mjs --url "$base" --stream clock --source clock --keep 1 \
  --seconds $((ROUNDS * (4 * SECONDS_PER_ROUND + 40))) > "$work/whip.json" 2>&1 &
pids+=($!)
sleep 6

echo "[2/2] $ROUNDS rounds of $SECONDS_PER_ROUND s each of plain HLS, LL-HLS, WHEP and WHIP → WHEP in Chromium…" >&2
for r in $(seq "$ROUNDS"); do
  for kind in plain ll; do
    ll=$([ "$kind" = ll ] && echo 1 || echo 0)
    (cd web && node tests/play.mjs --url "$base/?stream=cam&player=hls&mode=LIVE&autoplay=1&lowlatency=$ll" \
      --screenshot "$work/$kind$r.png" --advance 1 --timeout 40 --sample "$SECONDS_PER_ROUND" --clock 1) \
      > "$work/$kind$r.json" || { echo "$kind round $r did not play" >&2; cat "$work/$kind$r.json" >&2; exit 1; }
    echo "  round $r: $kind HLS sampled" >&2
  done
  (cd web && node tests/whep.mjs --url "$base" --stream cam --sample "$SECONDS_PER_ROUND" --clock 1) > "$work/whep$r.json" \
    || { echo "WHEP round $r did not play" >&2; cat "$work/whep$r.json" >&2; exit 1; }
  echo "  round $r: WHEP sampled" >&2
  (cd web && node tests/whep.mjs --url "$base" --stream clock --sample "$SECONDS_PER_ROUND" --clock 1) > "$work/whip$r.json" \
    || { echo "WHIP→WHEP round $r did not play" >&2; cat "$work/whip$r.json" >&2; exit 1; }
  echo "  round $r: WHIP → WHEP sampled" >&2
done

python3 - "$work" "$ROUNDS" <<'EOF'
import json, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
fragment_s = 1.0
p = lambda v, q: v[min(len(v) - 1, int(q * (len(v) - 1) + 0.5))]
med = lambda v: statistics.median(v) if v else float("nan")
kinds = (("plain", "plain HLS"), ("ll", "LL-HLS"), ("whep", "WHEP"), ("whip", "WHIP → WHEP"))
glass, rows = {}, []
for kind, name in kinds:
    for r in range(1, rounds + 1):
        report = json.loads(open(f"{work}/{kind}{r}.json").read().strip().splitlines()[-1])
        d = report["delays"]
        g = sorted(x["glass"] / 1000 for x in d if x.get("glass") is not None)
        m = sorted(x["measured"] for x in d if x.get("measured") is not None)
        e = sorted(x["estimate"] for x in d if x.get("estimate"))
        b = sorted(x["buffer"] for x in d if x.get("buffer") is not None)
        glass.setdefault(kind, []).append(med(g))
        rows.append((name, r, med(g), p(g, 0.9) if g else float("nan"), len(g), med(m), med(e), med(b)))
print("live delay in Chromium, RTSP camera (ffmpeg, x264 zerolatency) at 25 fps with 1 s GOPs")
print("| kind | round | glass-to-glass p50 | p90 | frames read | server-arrival p50 | hls.js estimate p50 | WebRTC jitter buffer p50 |")
print("|---|---|---|---|---|---|---|---|")
for name, r, g50, g90, n, m50, e50, b50 in rows:
    print(f"| {name} | {r} | {g50:.3f} s | {g90:.3f} s | {n} | {m50:.2f} s | {e50:.2f} s | {b50:.1f} ms |")
for kind, name in kinds:
    v = sorted(glass[kind])
    print(f"{name}: glass to glass, median of the rounds' p50 {med(v):.3f} s (spread {v[0]:.3f}-{v[-1]:.3f}),"
          f" {med(v) / fragment_s:.2f} fragment durations")
for kind in ("ll", "whep", "whip"):
    ratios = sorted(a / b for a, b in zip(glass[kind], glass["plain"]))
    print(f"{dict(kinds)[kind]} / plain HLS, glass to glass, round by round: median {med(ratios):.2f}"
          f" (spread {ratios[0]:.2f}-{ratios[-1]:.2f})")
EOF
