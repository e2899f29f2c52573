#!/usr/bin/env bash
# Resident memory per idle open connection: N (default 10 000) connections on
# loopback, client source addresses spread over 127.0.0.2–127.0.0.201, one
# small echo on each, all held open; server VmRSS growth / N. A fresh server
# process per measurement.
#
#   conformance/bench/idle_memory.sh
#   IDLE=2000 conformance/bench/idle_memory.sh
#   SERVERS="wsmachine-tokio wtx" conformance/bench/idle_memory.sh  # only their cases
#
# Results: target/bench/idle-results.txt and target/bench/idle-table.md.
source "$(dirname "$0")/common.sh"

IDLE=${IDLE:-10000}
HOLD=${HOLD:-4}
[ "${NO_BUILD:-0}" = 1 ] || build_all
wait_for_quiet

RESULTS="$OUT/idle-results.txt"
: >"$RESULTS"
echo "# $(date -u +%FT%TZ) $(uname -srm); ulimit -n $(ulimit -n); load $(cut -d' ' -f1-3 /proc/loadavg)" >>"$RESULTS"

# server name, then loadgen flags
# name|loadgen flags|server environment. With the default DeflateConfig
# (release_after_idle of zero) a compressed connection keeps no zlib stream
# between messages, only its windows, so glibc's defaults show it at once;
# the MALLOC_MMAP_THRESHOLD_ cases are kept for comparison with earlier
# runs (and for configurations whose streams are the connection's own:
# glibc only gives those back to the OS when large blocks come from mmap).
CASES=(
  "wsmachine-tokio||"
  "wsmachine-tokio|--deflate|"
  "wsmachine-tokio|--deflate --compressed-msg|"
  "wsmachine-tokio|--deflate --compressed-msg|MALLOC_MMAP_THRESHOLD_=65536"
  "wsmachine-tokio-forward||"
  "wsmachine-smol||"
  "wsmachine-smol|--deflate --compressed-msg|"
  "wsmachine-smol|--deflate --compressed-msg|MALLOC_MMAP_THRESHOLD_=65536"
  "wsmachine-async-std||"
  "wsmachine-async-std|--deflate --compressed-msg|"
  "wsmachine-async-std|--deflate --compressed-msg|MALLOC_MMAP_THRESHOLD_=65536"
  "tokio-tungstenite||"
  "fastwebsockets||"
  "tokio-websockets||"
  "wtx||"
)
port=9500
for c in "${CASES[@]}"; do
  IFS='|' read -r name flags senv <<<"$c"
  if [ -n "${SERVERS:-}" ] && [[ " $SERVERS " != *" $name "* ]]; then
    continue
  fi
  # shellcheck disable=SC2086
  start_server "$name" "$port" $senv
  echo "==> $name $flags $senv: $IDLE idle connections" >&2
  label=$name
  [ -n "$senv" ] && label="$name+mmap"
  # shellcheck disable=SC2086
  "$BIN/loadgen" --idle "$IDLE" --addr "127.0.0.1:$port" --server-pid "$SPID" \
    --hold "$HOLD" --label "$label" $flags | tee -a /dev/stderr | grep '^RESULT' >>"$RESULTS" || true
  stop_server "$SPID"
  port=$((port + 1))
done

python3 "$ROOT/conformance/bench/summarize.py" idle "$RESULTS" | tee "$OUT/idle-table.md"
