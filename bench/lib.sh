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
