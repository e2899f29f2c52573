#!/usr/bin/env bash
# Resident memory per idle open connection: N (default 10 000) connections on
# loopback, client source addresses spread over 127.0.0.2–127.0.0.201, one
# small echo on each, all held open; server VmRSS growth / N. A fresh server
# process per measurement.
#
#   conformance/bench/idle_memory.sh
#   IDLE=2000 conformance/bench/idle_memory.sh
#
# Results: target/bench/idle-results.txt and target/bench/idle-table.md.
source "$(dirname "$0")/common.sh"

IDLE=${IDLE:-10000}
HOLD=${HOLD:-2}
[ "${NO_BUILD:-0}" = 1 ] || build_all
wait_for_quiet

RESULTS="$OUT/idle-results.txt"
: >"$RESULTS"
echo "# $(date -u +%FT%TZ) $(uname -srm); ulimit -n $(ulimit -n); load $(cut -d' ' -f1-3 /proc/loadavg)" >>"$RESULTS"

# server name, then loadgen flags
CASES=(
  "wsmachine-tokio|"
  "wsmachine-tokio|--deflate"
  "wsmachine-tokio|--deflate --compressed-msg"
  "wsmachine-tokio-forward|"
  "wsmachine-smol|"
  "wsmachine-smol|--deflate --compressed-msg"
  "wsmachine-async-std|"
  "wsmachine-async-std|--deflate --compressed-msg"
  "tokio-tungstenite|"
  "fastwebsockets|"
  "tokio-websockets|"
)
port=9500
for c in "${CASES[@]}"; do
  name=${c%%|*}
  flags=${c#*|}
  start_server "$name" "$port"
  echo "==> $name $flags: $IDLE idle connections" >&2
  # shellcheck disable=SC2086
  "$BIN/loadgen" --idle "$IDLE" --addr "127.0.0.1:$port" --server-pid "$SPID" \
    --hold "$HOLD" --label "$name" $flags | tee -a /dev/stderr | grep '^RESULT' >>"$RESULTS" || true
  stop_server "$SPID"
  port=$((port + 1))
done

python3 "$ROOT/conformance/bench/summarize.py" idle "$RESULTS" | tee "$OUT/idle-table.md"
