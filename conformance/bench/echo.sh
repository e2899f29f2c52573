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
#   UWS_ECHO=/path/to/uws_echo conformance/bench/echo.sh   # uWebSockets too
#   PIN=1 conformance/bench/echo.sh           # loadgen on CPU 1, servers on CPU 0
#   BEFORE_BIN=/copy/of/old/bench-bin SERVERS="wsmachine-tokio wsmachine-tokio@before" ...
#
# uWebSockets (C++) is an optional peer, listed only when UWS_ECHO names its
# echo binary (built outside the project by ../shared/peers/uws/build.sh;
# never built or run by CI). With it the tables add each server's CPU per
# message divided by uWS's.
# A scenario is NAME:SIZE:WINDOW[:CONNS] (CONNS defaults to $CONNS); the
# matrix of issue 18 is in BENCHMARKS.md ("Against uWebSockets").
# PIN=1 runs every server on CPU SERVER_CPU (0) and the load generator on
# CLIENT_CPU (1) with taskset, so the two never share a core.
#
# Results: target/bench/echo-results.txt (RESULT lines), the table on stdout
# and in target/bench/echo-table.md; the plot data for plot.py.
source "$(dirname "$0")/common.sh"

ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
CONNS=${CONNS:-64}
SWEEP=${SWEEP:-1}
SERVERS=${SERVERS:-"wsmachine-tokio wsmachine-smol wsmachine-async-std wsmachine-tokio-forward wsmachine-core tokio-tungstenite tokio-tungstenite-send-each fastwebsockets tokio-websockets wtx raw-tcp${UWS_ECHO:+ uws}"}
case " $SERVERS " in
  *" uws "*) [ -x "${UWS_ECHO:-}" ] || { echo "uws listed but UWS_ECHO is not an executable" >&2; exit 2; } ;;
esac
LOADGEN_PIN=()
if [ "${PIN:-0}" = 1 ]; then
  export PIN_SERVER=${SERVER_CPU:-0}
  LOADGEN_PIN=(taskset -c "${CLIENT_CPU:-1}")
fi
# name size window
SCENARIOS=${SCENARIOS:-"16B-pipelined:16:16 1KiB-pipelined:1024:16 64KiB-pipelined:65536:16 16B-ping-pong:16:1"}
SWEEP_SCENARIOS=${SWEEP_SCENARIOS:-"128B-pipelined:128:16 4KiB-pipelined:4096:16 16KiB-pipelined:16384:16"}

[ "${NO_BUILD:-0}" = 1 ] || build_all
wait_for_quiet

RESULTS="$OUT/echo-results.txt"
: >"$RESULTS"
{
  echo "# $(date -u +%FT%TZ) $(uname -srm); $(nproc) CPUs; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg); rounds=$ROUNDS duration=$DURATION warmup=$WARMUP conns=$CONNS pin=${PIN:-0}${PIN_SERVER:+ server_cpu=$PIN_SERVER client_cpu=${CLIENT_CPU:-1}}"
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
  local sc name size window conns round s raw
  for sc in "$@"; do
    IFS=: read -r name size window conns <<<"$sc"
    conns=${conns:-$CONNS}
    for round in $(seq "$rounds"); do
      for s in $SERVERS; do
        raw=""
        [ "$s" = raw-tcp ] && raw="--raw"
        echo "==> $name round $round: $s" >&2
        line=$("${LOADGEN_PIN[@]}" "$BIN/loadgen" --addr "${ADDR[$s]}" --conns "$conns" --size "$size" \
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
