#!/usr/bin/env bash
# Runs the engine benchmarks of an earlier revision and of the working tree, interleaved
# (A B B A A B …) on the same machine, and prints every ratio each bench reports with
# its median and spread for both sides: "did this change make anything slower?".
#
#   bench/compare_revisions.sh [REV] [ROUNDS] [BENCH...]
#     REV     the baseline revision (default: origin of this branch, HEAD~1)
#     ROUNDS  runs per side (default 3)
#     BENCH   cargo bench targets (default: ingest queues data_streams rtsp_publishers)
#
# The baseline is built in a git worktree under target/compare/ (kept for the next run).
# KINESCOPE_BENCH_SCALE applies to both sides. Logs: target/compare/logs/.
set -euo pipefail
cd "$(dirname "$0")/.."
rev="${1:-HEAD~1}"
rounds="${2:-3}"
shift 2 2>/dev/null || shift $# 
benches=("$@")
[ ${#benches[@]} -gt 0 ] || benches=(ingest queues data_streams rtsp_publishers)

base_sha=$(git rev-parse --short "$rev")
summary_only=${SUMMARY_ONLY:-0}   # 1: summarise the logs of the last run only
base_dir="target/compare/$base_sha"
logs="target/compare/logs"
mkdir -p "$logs"
if [ "$summary_only" != 1 ]; then
if [ ! -d "$base_dir" ]; then
  echo "== preparing $base_sha in $base_dir" >&2
  git worktree add --detach "$base_dir" "$base_sha" >/dev/null
fi
# The watch page's players are embedded at build time; the baseline uses ours.
mkdir -p "$base_dir/web/dist" && cp -r web/dist/vendor "$base_dir/web/dist/" 2>/dev/null || true

bench_args=()
for b in "${benches[@]}"; do bench_args+=(--bench "$b"); done
binaries() { # DIR → "name path" per bench
  (cd "$1" && cargo bench --no-run "${bench_args[@]}" --message-format=json 2>/dev/null) \
    | python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and "bench" in m["target"]["kind"]:
        print(m["target"]["name"], m["executable"])'
}
echo "== building the benches of $base_sha and of the working tree" >&2
declare -A base new
while read -r name exe; do base[$name]=$exe; done < <(binaries "$base_dir")
while read -r name exe; do new[$name]=$exe; done < <(binaries .)

run() { # SIDE NAME ROUND
  local side=$1 name=$2 round=$3 dir exe
  if [ "$side" = base ]; then dir=$base_dir; exe=${base[$name]}; else dir=.; exe=${new[$name]}; fi
  echo "   [$round/$rounds] $name ($side)" >&2
  (cd "$dir" && "$exe" --bench) > "$logs/$name.$side.$round.txt" 2>&1
}
for name in "${benches[@]}"; do
  for round in $(seq 1 "$rounds"); do
    if [ $((round % 2)) -eq 1 ]; then run base "$name" "$round"; run new "$name" "$round"
    else run new "$name" "$round"; run base "$name" "$round"; fi
  done
done
fi

python3 - "$logs" "$rounds" "$base_sha" "${benches[@]}" <<'EOF'
import re, statistics, sys
logs, rounds, base_sha, benches = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]

def ratios(text):
    """Every (row label, ratio) a bench prints: markdown rows with a 'ratio' column,
    and 'label ... ratio X' lines."""
    out, header = {}, None
    for line in text.splitlines():
        if line.startswith('|'):
            cells = [c.strip() for c in line.strip('|').split('|')]
            if 'ratio' in cells:
                header = cells
                continue
            if header and len(cells) == len(header) and not set(line) <= set('|- '):
                i = header.index('ratio')
                keys = [j for j, h in enumerate(header) if h in ('figure', 'clients', 'batch', 'publishers')]
                label = ' / '.join(cells[j] for j in keys) or cells[0]
                m = re.match(r'[0-9.]+', cells[i])
                if m:
                    out[label] = float(m.group())
        else:
            header = None if not line.strip() else header
            m = re.match(r'\s*(.+?)\s*:.*ratio\s+([0-9.]+)', line)
            if m:
                out[m.group(1)] = float(m.group(2))
    return out

print(f"\n| bench | figure | before ({base_sha}) median (min–max) | after median (min–max) |")
print("|---|---|---|---|")
for name in benches:
    sides = {}
    for side in ('base', 'new'):
        runs = [ratios(open(f"{logs}/{name}.{side}.{r}.txt").read()) for r in range(1, rounds + 1)]
        sides[side] = runs
    labels = list(dict.fromkeys(l for r in sides['base'] + sides['new'] for l in r))
    for label in labels:
        cols = []
        for side in ('base', 'new'):
            v = [r[label] for r in sides[side] if label in r]
            cols.append(f"{statistics.median(v):.2f} ({min(v):.2f}–{max(v):.2f})" if v else "–")
        print(f"| {name} | {label} | {cols[0]} | {cols[1]} |")
EOF
