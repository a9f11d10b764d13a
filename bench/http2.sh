#!/usr/bin/env bash
# HTTP/2 against HTTP/1.1 on the same server, in the same run, interleaved: h2load sends
# the same signed-free (anonymous, loopback) requests over HTTP/1.1 keep-alive and over
# HTTP/2 (10 streams per connection), ROUNDS rounds of each, and prints each round's
# requests/s and the median HTTP/2 ÷ HTTP/1.1 ratio with its spread, for three requests:
# two small JSON calls (Kinesis DescribeStreamSummary, SQS GetQueueAttributes) and an
# HLS media segment.
#
#   bench/http2.sh                 (REQUESTS=20000 CLIENTS=16 ROUNDS=3 to change)
#
# Installs h2load (Debian's nghttp2-client) if missing; builds the release binary.
set -euo pipefail
cd "$(dirname "$0")/.."
REQUESTS="${REQUESTS:-20000}"
CLIENTS="${CLIENTS:-16}"
ROUNDS="${ROUNDS:-3}"

scripts/setup run
. bench/lib.sh
ensure_h2load
bench_start http2

start_server

echo "[1/3] a Kinesis stream and an HLS segment to ask for…" >&2
curl -sf -H 'X-Amz-Target: Kinesis_20131202.CreateStream' -H 'Content-Type: application/x-amz-json-1.1' \
  -d '{"StreamName":"bench","ShardCount":1}' "$base/" >/dev/null
printf '{"StreamName":"bench"}' > "$work/describe.json"
queue_url=$(curl -sf -H 'X-Amz-Target: AmazonSQS.CreateQueue' -H 'Content-Type: application/x-amz-json-1.0' \
  -d '{"QueueName":"bench"}' "$base/" | python3 -c 'import json,sys; print(json.load(sys.stdin)["QueueUrl"])')
printf '{"QueueUrl":"%s","AttributeNames":["All"]}' "$queue_url" > "$work/attributes.json"
ffmpeg -v error -f lavfi -i testsrc2=size=640x360:rate=25 -t 6 -c:v libx264 -preset veryfast -g 25 \
  -movflags frag_keyframe+empty_moov+default_base_moof "$work/camera.mp4"
put_stream cam "$work/camera.mp4"
segment=$(hls_segment cam)
segment_bytes=$(curl -sf "$segment" | wc -c)

rate() { # h2load args... -> requests/s
  h2load "$@" 2>/dev/null | awk '/^finished in/ {gsub(",", "", $4); print $4}'
}
echo "[2/3] $ROUNDS rounds, HTTP/1.1 then HTTP/2, $REQUESTS requests from $CLIENTS clients each…" >&2
for what in json sqs segment; do
  for r in $(seq "$ROUNDS"); do
    if [ "$what" = json ]; then
      args=(-d "$work/describe.json" -H 'X-Amz-Target: Kinesis_20131202.DescribeStreamSummary'
            -H 'Content-Type: application/x-amz-json-1.1' "$base/")
    elif [ "$what" = sqs ]; then
      args=(-d "$work/attributes.json" -H 'X-Amz-Target: AmazonSQS.GetQueueAttributes'
            -H 'Content-Type: application/x-amz-json-1.0' "$base/")
    else
      args=("$segment")
    fi
    h1=$(rate --h1 -n "$REQUESTS" -c "$CLIENTS" "${args[@]}")
    h2=$(rate -n "$REQUESTS" -c "$CLIENTS" -m 10 "${args[@]}")
    echo "$what $r $h1 $h2" | tee -a "$work/rounds.txt" >&2
  done
done

echo "[3/3] summary" >&2
python3 - "$work/rounds.txt" "$segment_bytes" <<'PY'
import statistics as st, sys
rows = [l.split() for l in open(sys.argv[1])]
print(f"HTTP/2 (10 streams per connection) against HTTP/1.1 keep-alive, same server, interleaved; "
      f"the segment is {int(sys.argv[2]):,} bytes")
print("| request | HTTP/1.1 req/s median (min–max) | HTTP/2 req/s median (min–max) | HTTP/2 ÷ HTTP/1.1 median (spread) |")
print("|---|---|---|---|")
for what, label in (("json", "Kinesis DescribeStreamSummary (JSON)"), ("sqs", "SQS GetQueueAttributes (JSON)"),
                    ("segment", "HLS media segment")):
    h1 = [float(r[2]) for r in rows if r[0] == what]
    h2 = [float(r[3]) for r in rows if r[0] == what]
    ratios = [b / a for a, b in zip(h1, h2)]
    f = lambda xs: f"{st.median(xs):,.0f} ({min(xs):,.0f}–{max(xs):,.0f})"
    print(f"| {label} | {f(h1)} | {f(h2)} | {st.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f}) |")
PY
