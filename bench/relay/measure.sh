#!/usr/bin/env bash
# How fast the relay is on this machine, measured with curl against the benchmark's plain nginx:
#   bench/relay/measure.sh [RUNS]   (default 5; nginx.sh's nginx on DMBENCH_PORT, default 18080, and the corpus)
# 1. one connection, 256 MiB (large/L0..L3), straight from nginx, then through the relay unshaped (splice), then
#    through the relay's user-space queue (--copy, the path every shaped relay takes): median wall time and MB/s, and
#    the relay's CPU seconds per GiB;
# 2. 16 connections at once through --rate 8M, each a 16 MiB range of L0: the slowest connection's time against the
#    floor of 16 MiB / 8 MiB/s = 2.0 s, and the relay's CPU seconds.
# Also a row through the queue with a 1 us round trip (the cost of the latency timer alone). RELAY_BIN: another relay
# binary to measure (default: this crate's release build).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
runs=${1:-5}
port=${DMBENCH_PORT:-18080}
bin=${RELAY_BIN:-$here/target/release/relay}
[ -x "$bin" ] || { echo "measure.sh: build it first: cargo build --release --manifest-path $here/Cargo.toml" >&2; exit 2; }
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT
start() {  # start ARGS... -> sets $rport and $rpid
  local log; log=$(mktemp)
  "$bin" --listen 127.0.0.1:0 --upstream "127.0.0.1:$port" "$@" >"$log" 2>&1 &
  rpid=$!; pids+=("$rpid")
  for _ in $(seq 50); do grep -q listening "$log" && break; sleep 0.05; done
  rport=$(grep -o 'listening on 127.0.0.1:[0-9]*' "$log" | cut -d: -f2); rm -f "$log"
}
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }   # user+sys ticks
tck=$(getconf CLK_TCK)
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
one() {  # one LABEL PORT [PID]
  local label=$1 p=$2 pid=${3:-} c0=0 c1=0 t
  [ -n "$pid" ] && c0=$(cpu "$pid")
  t=$(for i in $(seq "$runs"); do curl -s -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$p/large/L$((i % 4)).bin"; done | median)
  [ -n "$pid" ] && c1=$(cpu "$pid")
  printf '%-28s %6.3f s  %6.0f MB/s' "$label" "$t" "$(echo "268435456 / $t / 1000000" | bc -l)"
  if [ -n "$pid" ]; then printf '   relay CPU %.2f s/GiB' "$(echo "($c1 - $c0) / $tck / ($runs / 4)" | bc -l)"; fi
  echo
}
echo "one connection, 256 MiB, median of $runs (load: $(cut -d' ' -f1-3 /proc/loadavg))"
one "nginx direct" "$port"
start; one "relay, unshaped (splice)" "$rport" "$rpid"
start --copy; one "relay, --copy (user space)" "$rport" "$rpid"
start --rtt-ms 0.001; one "relay, 1 us rtt (queue+timer)" "$rport" "$rpid"
start --rate 8M; p8=$rport; pid8=$rpid
echo "16 connections at once through --rate 8M, 16 MiB each (floor 2.00 s)"
for r in $(seq "$runs"); do
  c0=$(cpu "$pid8"); s=$(date +%s.%N)
  slow=$(for i in $(seq 0 15); do curl -s -o /dev/null -r $((i << 24))-$((((i + 1) << 24) - 1)) -w '%{time_total}\n' "http://127.0.0.1:$p8/large/L0.bin" & done; wait)
  e=$(date +%s.%N); c1=$(cpu "$pid8")
  printf '  run %d: all done in %.3f s, slowest connection %.3f s, fastest %.3f s, relay CPU %.2f s\n' "$r" \
    "$(echo "$e - $s" | bc -l)" "$(echo "$slow" | sort -n | tail -1)" "$(echo "$slow" | sort -n | head -1)" "$(echo "($c1 - $c0) / $tck" | bc -l)"
done
