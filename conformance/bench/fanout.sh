#!/usr/bin/env bash
# Fan-out (issue 15): one server process holds N connections (1,000 and
# 10,000) and publishes the same JSON-like 1 KiB text messages to every one
# of them; the `fanout` load process checks every byte of every message on
# every connection and reports the server's CPU time per delivered message
# (utime+stime from /proc/PID/stat; the nanosecond schedstat sum beside it).
# The server runs on one core and the load process on the other (taskset),
# a fresh server per run, variants interleaved (A B C ... A B C ...).
#
#   conformance/bench/fanout.sh                  # everything, 3 reps
#   REPS=5 CONNS="1000" conformance/bench/fanout.sh
#   CASES_RE='^(wsmachine|raw-tcp)$' conformance/bench/fanout.sh   # some cases only
#   QUIET_LOAD=1.5 conformance/bench/fanout.sh   # first wait for a quiet machine
#
# Each run delivers about DELIVERIES messages in all (DELIVERIES_DEFLATE
# with compression), so messages per connection = DELIVERIES / N, in bursts
# of BURST (the server waits for every connection to take a burst before
# the next: nothing is dropped). Needs N+ file descriptors: the limit is
# raised to the hard limit (common.sh); 10,000 connections need it >= 10,100.
#
# Results: target/bench/NAME-results.txt (RESULT lines) and the table in
# target/bench/NAME-table.md (NAME=fanout unless set).
source "$(dirname "$0")/common.sh"

REPS=${REPS:-3}
CONNS=${CONNS:-"1000 10000"}
BURST=${BURST:-16}
DELIVERIES=${DELIVERIES:-1000000}
DELIVERIES_DEFLATE=${DELIVERIES_DEFLATE:-200000}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
CASES_RE=${CASES_RE:-.}

# label|server variant|deflate preset|fanout flags. The `+deflate` rows
# compress per connection (context takeover, the default); `+shared` ones
# use server_no_context_takeover and client_no_context_takeover, so one
# compressed encoding of a prepared message serves every connection.
CASES=(
  "wsmachine|wsmachine|none|"
  "wsmachine-prepared|wsmachine-prepared|none|"
  "wsmachine-prepared-try|wsmachine-prepared-try|none|"
  "tokio-tungstenite|tokio-tungstenite|none|"
  "raw-tcp|raw-tcp|none|--raw"
  "raw-tcp-batched|raw-tcp-batched|none|--raw"
  "wsmachine+deflate|wsmachine|default|--deflate"
  "wsmachine-prepared+deflate|wsmachine-prepared|default|--deflate"
  "wsmachine-prepared+shared|wsmachine-prepared|shared|--deflate"
  "wsmachine-prepared-try+shared|wsmachine-prepared-try|shared|--deflate"
)

# More cases, same form: e.g. CASES_EXTRA="wsmachine+deflate@before|wsmachine|default|--deflate"
# with BEFORE_BIN=<an older bench-bin> for an A/B in one run.
# shellcheck disable=SC2206
CASES+=(${CASES_EXTRA:-})

if [ "${NO_BUILD:-0}" != 1 ]; then
  echo "==> building (release)" >&2
  cargo build --release -q -p wsmachine-conformance --bin fanout --example fanout_server
  freeze "$R/fanout" "$BIN/fanout"
  freeze "$R/examples/fanout_server" "$BIN/fanout_server"
fi
wait_for_quiet
[ "$(ulimit -n)" -gt 10100 ] || echo "warning: ulimit -n is $(ulimit -n); 10,000 connections will fail" >&2

NAME=${NAME:-fanout}
RESULTS="$OUT/$NAME-results.txt"
: >"$RESULTS"
{
  echo "# $(date -u +%FT%TZ) $(uname -srm); $(nproc) CPUs; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg); reps=$REPS burst=$BURST deliveries=$DELIVERIES/$DELIVERIES_DEFLATE server on CPU $SERVER_CPU, load on CPU $CLIENT_CPU"
} >>"$RESULTS"

port=21700
for n in $CONNS; do
  for rep in $(seq "$REPS"); do
    for c in "${CASES[@]}"; do
      IFS='|' read -r label variant preset flags <<<"$c"
      [[ $label =~ $CASES_RE ]] || continue
      total=$DELIVERIES
      [ "$preset" = none ] || total=$DELIVERIES_DEFLATE
      msgs=$(((total + n - 1) / n))
      port=$((port + 1))
      log="$OUT/fanout-server.log"
      # The last run's log says "listening" too: start from none.
      rm -f "$log"
      echo "==> $label: $n connections x $msgs messages, rep $rep" >&2
      # shellcheck disable=SC2086
      # LABEL@before cases (in CASES_EXTRA) run BEFORE_BIN's server.
      server_bin="$BIN/fanout_server"
      [[ $label == *@before ]] && server_bin="${BEFORE_BIN:?LABEL@before needs BEFORE_BIN}/fanout_server"
      taskset -c "$SERVER_CPU" "$server_bin" "127.0.0.1:$port" --variant "$variant" \
        --conns "$n" --messages "$msgs" --burst "$BURST" --preset "$preset" --max-secs 600 >"$log" 2>&1 &
      spid=$!
      STARTED+=("$spid")
      for _ in $(seq 100); do
        grep -q "listening on" "$log" 2>/dev/null && break
        sleep 0.1
      done
      # shellcheck disable=SC2086
      line=$(taskset -c "$CLIENT_CPU" "$BIN/fanout" --addr "127.0.0.1:$port" --conns "$n" \
        --messages "$msgs" --server-pid "$spid" --label "$label" --timeout 300 $flags |
        tee -a /dev/stderr | grep '^RESULT' || true)
      # The server exits once every client has closed; bounded wait.
      for _ in $(seq 300); do
        kill -0 "$spid" 2>/dev/null || break
        sleep 0.1
      done
      stop_server "$spid"
      grep -E '^(done|backpressure)' "$log" >&2 || true
      if [ -n "$line" ]; then
        echo "$line rep=$rep load=$(cut -d' ' -f1 /proc/loadavg)" >>"$RESULTS"
      else
        echo "RESULT label=$label conns=$n rep=$rep ok=0 failed=1" >>"$RESULTS"
        tail -3 "$log" >&2
      fi
    done
  done
done
echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$RESULTS"

python3 "$ROOT/conformance/bench/summarize.py" fanout "$RESULTS" | tee "$OUT/$NAME-table.md"
