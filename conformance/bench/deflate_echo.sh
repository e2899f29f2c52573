#!/usr/bin/env bash
# Compressed echo (issue 15): loadgen --deflate (64 connections, 16 JSON-like
# 1 KiB text messages in flight on each, compressed) against wsmachine-tokio's
# echo_server, wtx's echo with permessage-deflate (WTX_DEFLATE=1) and Node
# `ws` with perMessageDeflate; each server compresses its echoes (the share
# that came back compressed is in the table). Server on one CPU, loadgen on
# the other, servers alternating A B C A B C ... for ROUNDS rounds.
#
#   conformance/bench/deflate_echo.sh
#   ROUNDS=5 DURATION=5 conformance/bench/deflate_echo.sh
#   NODE_MODULES=/path/to/node_modules conformance/bench/deflate_echo.sh
#
# Node's `ws` comes from target/interop-node (installed there with npm by
# the interop tests, or here when missing). Results:
# target/bench/deflate-echo-results.txt and target/bench/deflate-echo-table.md.
source "$(dirname "$0")/common.sh"

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
CONNS=${CONNS:-64}
WINDOW=${WINDOW:-16}
SIZE=${SIZE:-1024}
SERVERS=${SERVERS:-"wsmachine-tokio wtx+deflate node-ws+deflate"}
export PIN_SERVER=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}

if [ "${NO_BUILD:-0}" != 1 ]; then
  echo "==> building (release)" >&2
  cargo build --release -q -p wsmachine-conformance --bin loadgen --example peer_wtx_echo
  freeze "$R/loadgen" "$BIN/loadgen"
  freeze "$R/examples/peer_wtx_echo" "$BIN/peer_wtx_echo"
  cargo build --release -q -p wsmachine-tokio --example echo_server
  freeze "$R/examples/echo_server" "$BIN/echo_tokio"
fi
NODE_MODULES=${NODE_MODULES:-"$ROOT/target/interop-node/node_modules"}
if [[ " $SERVERS " == *" node-ws+deflate "* ]] && [ ! -f "$NODE_MODULES/ws/package.json" ]; then
  echo "==> installing ws@8 into target/interop-node" >&2
  mkdir -p "$ROOT/target/interop-node"
  (cd "$ROOT/target/interop-node" &&
    { [ -f package.json ] || echo '{"name":"wsmachine-interop-peers","private":true}' >package.json; } &&
    npm install --no-audit --no-fund --loglevel=error ws@8)
  NODE_MODULES="$ROOT/target/interop-node/node_modules"
fi
export NODE_MODULES
wait_for_quiet

RESULTS="$OUT/deflate-echo-results.txt"
: >"$RESULTS"
{
  echo "# $(date -u +%FT%TZ) $(uname -srm); $(nproc) CPUs; node $(node --version 2>/dev/null); ws $(node -p "require('$NODE_MODULES/ws/package.json').version" 2>/dev/null)"
  echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg); rounds=$ROUNDS duration=$DURATION conns=$CONNS window=$WINDOW size=$SIZE; server on CPU $PIN_SERVER, loadgen on CPU $CLIENT_CPU"
} >>"$RESULTS"

declare -A PID ADDR
port=21450
for s in $SERVERS; do
  start_server "$s" "$port"
  PID[$s]=$SPID
  ADDR[$s]="127.0.0.1:$port"
  port=$((port + 1))
done

for round in $(seq "$ROUNDS"); do
  for s in $SERVERS; do
    echo "==> round $round: $s" >&2
    line=$(taskset -c "$CLIENT_CPU" "$BIN/loadgen" --addr "${ADDR[$s]}" --conns "$CONNS" --size "$SIZE" \
      --window "$WINDOW" --duration "$DURATION" --warmup "$WARMUP" --deflate \
      --server-pid "${PID[$s]}" --label "$s" | tee -a /dev/stderr | grep '^RESULT' || true)
    if [ -n "$line" ]; then
      echo "$line round=$round load=$(cut -d' ' -f1 /proc/loadavg)" >>"$RESULTS"
    else
      echo "RESULT label=$s round=$round failed=1" >>"$RESULTS"
    fi
  done
done
echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$RESULTS"

python3 "$ROOT/conformance/bench/summarize.py" deflate-echo "$RESULTS" | tee "$OUT/deflate-echo-table.md"
