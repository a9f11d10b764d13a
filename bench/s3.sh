#!/usr/bin/env bash
# S3 reads against what the server already serves fast, same server, same run,
# interleaved:
#  - GetObject of a 256 KiB object (a presigned URL, so h2load can repeat it) against
#    the HLS media segment holding the same bytes, HTTP/1.1 keep-alive, ROUNDS rounds;
#  - one 1,000-key ListObjectsV2 page of a 1,000-key bucket against the first and a
#    middle page of 100,000-key buckets, keys flat in one directory and keys spread
#    over 100 directories (as Kinescope writes them: by camera and hour), boto3
#    signing each request, median of REPEAT requests per round.
#
#   bench/s3.sh        (ROUNDS=3 REQUESTS=20000 CLIENTS=16 REPEAT=10 to change)
#
# The buckets are laid out on disk before the server starts (100,000 PUTs through
# HTTP would take minutes); the server takes directories that predate its owner
# record as its own account's.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-3}"
REQUESTS="${REQUESTS:-20000}"
CLIENTS="${CLIENTS:-16}"
REPEAT="${REPEAT:-10}"

scripts/setup run
. bench/lib.sh
ensure_h2load
bench_start s3

echo "[1/4] buckets of 1,000 and 100,000 keys on disk…" >&2
python3 - "$work/data/buckets" <<'PY'
import os, sys
root = sys.argv[1]
def fill(bucket, n, dirs):
    for i in range(n):
        d = os.path.join(root, bucket, f"cam{i % dirs:03d}") if dirs > 1 else os.path.join(root, bucket)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"{i:07d}.json"), "w") as f:
            f.write("{}")
fill("small", 1000, 1)
fill("flat", 100000, 1)
fill("tree", 100000, 100)
PY
start_server

echo "[2/4] a stream, its HLS segment, and the same bytes as an object…" >&2
ffmpeg -v error -f lavfi -i testsrc2=size=1280x720:rate=25 -t 6 -c:v libx264 -preset veryfast -g 25 -b:v 2000k \
  -movflags frag_keyframe+empty_moov+default_base_moof "$work/camera.mp4"
put_stream cam "$work/camera.mp4"
segment=$(hls_segment cam 3)
curl -sf "$segment" -o "$work/segment.mp4"
object=$(.venv/bin/python - "$base" "$work/segment.mp4" <<'PY'
import sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1", aws_access_key_id="bench",
                  aws_secret_access_key="bench")
s3.create_bucket(Bucket="frames")
s3.put_object(Bucket="frames", Key="cams/cam/segment.mp4", Body=open(sys.argv[2], "rb").read())
print(s3.generate_presigned_url("get_object", Params={"Bucket": "frames", "Key": "cams/cam/segment.mp4"},
                                ExpiresIn=3600))
PY
)
cmp <(curl -sf "$object") "$work/segment.mp4"
bytes=$(wc -c < "$work/segment.mp4")

rate() { h2load "$@" 2>/dev/null | awk '/^finished in/ {gsub(",", "", $4); print $4}'; }
echo "[3/4] $ROUNDS interleaved rounds…" >&2
for r in $(seq "$ROUNDS"); do
  if [ $((r % 2)) -eq 1 ]; then
    seg=$(rate --h1 -n "$REQUESTS" -c "$CLIENTS" "$segment"); obj=$(rate --h1 -n "$REQUESTS" -c "$CLIENTS" "$object")
  else
    obj=$(rate --h1 -n "$REQUESTS" -c "$CLIENTS" "$object"); seg=$(rate --h1 -n "$REQUESTS" -c "$CLIENTS" "$segment")
  fi
  echo "get $r $seg $obj" | tee -a "$work/rounds.txt" >&2
  .venv/bin/python - "$base" "$REPEAT" "$r" <<'PY' | tee -a "$work/rounds.txt" >&2
import statistics, sys, time, boto3
base, repeat, r = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s3 = boto3.client("s3", endpoint_url=base, region_name="us-east-1", aws_access_key_id="bench",
                  aws_secret_access_key="bench")
def page(bucket, **kw):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = s3.list_objects_v2(Bucket=bucket, MaxKeys=1000, **kw)
        times.append(time.perf_counter() - t)
        assert out["KeyCount"] == 1000, out["KeyCount"]
    return statistics.median(times) * 1000
cases = [("small", {}), ("flat", {}), ("flat", {"StartAfter": "0050000.json"}), ("tree", {}),
         ("tree", {"StartAfter": "cam050/"})]
order = cases if int(r) % 2 else list(reversed(cases))
got = {f"{b}{'-mid' if kw else ''}": page(b, **kw) for b, kw in order}
print("list", r, *(f"{k}={v:.2f}" for k, v in sorted(got.items())))
PY
done

echo "[4/4] summary" >&2
python3 - "$work/rounds.txt" "$bytes" <<'PY'
import statistics as st, sys
rows = [l.split() for l in open(sys.argv[1])]
f = lambda xs, p=0: f"{st.median(xs):,.{p}f} ({min(xs):,.{p}f}–{max(xs):,.{p}f})"
get = [r for r in rows if r[0] == "get"]
seg, obj = [float(r[2]) for r in get], [float(r[3]) for r in get]
print(f"the same {int(sys.argv[2]):,} bytes, h2load over HTTP/1.1: HLS segment {f(seg)} req/s, "
      f"GetObject {f(obj)} req/s, GetObject ÷ segment {f([o / s for s, o in zip(seg, obj)], 2)}")
lists = [dict(kv.split("=") for kv in r[2:]) for r in rows if r[0] == "list"]
small = [float(l["small"]) for l in lists]
print(f"ListObjectsV2, one 1,000-key page, median ms per request (boto3 signing): 1,000-key bucket {f(small, 2)}")
for k, label in (("flat", "100,000 keys in one directory, first page"), ("flat-mid", "the same, a middle page"),
                 ("tree", "100,000 keys in 100 directories, first page"), ("tree-mid", "the same, a middle page")):
    v = [float(l[k]) for l in lists]
    print(f"  {label}: {f(v, 2)} ms, {f([a / b for a, b in zip(v, small)], 2)}× the 1,000-key bucket's")
PY
