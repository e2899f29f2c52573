#!/usr/bin/env bash
# Echo throughput and latency: our three adapters' echo servers against
# tokio-tungstenite (in its forward and send-each forms), fastwebsockets,
# tokio-websockets and wtx echo servers and a raw TCP echo (the ceiling),
# alternating A B C ... A B C ... (ROUNDS rounds), 64 connections each, then
# a table of medians and ratios.
#
#   conformance/bench/echo.sh                 # everything, 2 rounds, 5 s runs
#   ROUNDS=3 DURATION=5 conformance/bench/echo.sh
#   SWEEP=0 conformance/bench/echo.sh         # skip the size sweep for the plot
#   QUIET_LOAD=1.5 conformance/bench/echo.sh  # first wait for a quiet machine
#   SERVERS="wsmachine-tokio tokio-tungstenite raw-tcp" conformance/bench/echo.sh
#
# Results: target/bench/echo-results.txt (RESULT lines), the table on stdout
# and in target/bench/echo-table.md; the plot data for plot.py.
source "$(dirname "$0")/common.sh"

ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
CONNS=${CONNS:-64}
SWEEP=${SWEEP:-1}
SERVERS=${SERVERS:-"wsmachine-tokio wsmachine-smol wsmachine-async-std wsmachine-tokio-forward wsmachine-core tokio-tungstenite tokio-tungstenite-send-each fastwebsockets tokio-websockets wtx raw-tcp"}
# name size window
SCENARIOS=${SCENARIOS:-"16B-pipelined:16:16 1KiB-pipelined:1024:16 64KiB-pipelined:65536:16 16B-ping-pong:16:1"}
SWEEP_SCENARIOS=${SWEEP_SCENARIOS:-"128B-pipelined:128:16 4KiB-pipelined:4096:16 16KiB-pipelined:16384:16"}

[ "${NO_BUILD:-0}" = 1 ] || build_all
wait_for_quiet

RESULTS="$OUT/echo-results.txt"
: >"$RESULTS"
{
  echo "# $(date -u +%FT%TZ) $(uname -srm); $(nproc) CPUs; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg); rounds=$ROUNDS duration=$DURATION warmup=$WARMUP conns=$CONNS"
} >>"$RESULTS"

declare -A PID ADDR
port=9400
for s in $SERVERS; do
  start_server "$s" "$port"
  PID[$s]=$SPID
  ADDR[$s]="127.0.0.1:$port"
  port=$((port + 1))
done

run_scenarios() {
  local rounds=$1; shift
  local sc name size window round s raw
  for sc in "$@"; do
    IFS=: read -r name size window <<<"$sc"
    for round in $(seq "$rounds"); do
      for s in $SERVERS; do
        raw=""
        [ "$s" = raw-tcp ] && raw="--raw"
        echo "==> $name round $round: $s" >&2
        line=$("$BIN/loadgen" --addr "${ADDR[$s]}" --conns "$CONNS" --size "$size" \
          --window "$window" --duration "$DURATION" --warmup "$WARMUP" \
          --server-pid "${PID[$s]}" --label "$s" $raw | tee -a /dev/stderr | grep '^RESULT' || true)
        if [ -n "$line" ]; then
          echo "$line scenario=$name round=$round load=$(cut -d' ' -f1 /proc/loadavg)" >>"$RESULTS"
        else
          echo "RESULT label=$s scenario=$name round=$round failed=1" >>"$RESULTS"
        fi
      done
    done
  done
}

# shellcheck disable=SC2086
run_scenarios "$ROUNDS" $SCENARIOS
if [ "$SWEEP" = 1 ]; then
  # shellcheck disable=SC2086
  run_scenarios 1 $SWEEP_SCENARIOS
fi
echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$RESULTS"

python3 "$ROOT/conformance/bench/summarize.py" echo "$RESULTS" | tee "$OUT/echo-table.md"
