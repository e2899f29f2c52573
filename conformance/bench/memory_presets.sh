#!/usr/bin/env bash
# Memory per compressed connection by deflate preset (issue 15): a wsmachine
# echo server (fanout_server --variant echo --preset P) holds IDLE (10,000) connections, each of which exchanged MSGS
# compressed JSON-like 1 KiB messages; the server's VmRSS growth per
# connection right after the last connection's traffic, and after HOLD
# seconds idle. Default glibc allocator, no environment knobs. A fresh
# server per measurement, presets alternating, REPS times.
#
#   conformance/bench/memory_presets.sh
#   IDLE=2000 REPS=1 PRESETS="shared" conformance/bench/memory_presets.sh
#
# Presets: default (`DeflateConfig::default()`: context takeover, windows
# 12, memLevel 5), shared (`DeflateConfig::shared()`: no context takeover
# either way, one zlib stream per thread), small
# (`DeflateConfig::small_windows()`: context takeover, windows 10), none (no
# compression: the baseline).
# Results: target/bench/memory-results.txt and target/bench/memory-table.md.
source "$(dirname "$0")/common.sh"

IDLE=${IDLE:-10000}
HOLD=${HOLD:-3}
MSGS=${MSGS:-4}
REPS=${REPS:-3}
PRESETS=${PRESETS:-"default shared small none"}
export PIN_SERVER=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}

if [ "${NO_BUILD:-0}" != 1 ]; then
  echo "==> building (release)" >&2
  cargo build --release -q -p wsmachine-conformance --bin loadgen --example fanout_server
  freeze "$R/loadgen" "$BIN/loadgen"
  freeze "$R/examples/fanout_server" "$BIN/fanout_server"
fi
wait_for_quiet

RESULTS="$OUT/memory-results.txt"
: >"$RESULTS"
echo "# $(date -u +%FT%TZ) $(uname -srm); ulimit -n $(ulimit -n); load $(cut -d' ' -f1-3 /proc/loadavg); idle=$IDLE msgs=$MSGS hold=$HOLD" >>"$RESULTS"

port=21550
for rep in $(seq "$REPS"); do
  for p in $PRESETS; do
    if ! start_server "preset-$p" "$port"; then
      echo "RESULT label=$p rep=$rep failed=1" >>"$RESULTS"
      port=$((port + 1))
      continue
    fi
    echo "==> preset $p, rep $rep: $IDLE connections" >&2
    flags="--deflate --json-msgs $MSGS --size 1024"
    [ "$p" = none ] && flags=""
    # shellcheck disable=SC2086
    line=$(taskset -c "$CLIENT_CPU" "$BIN/loadgen" --idle "$IDLE" --addr "127.0.0.1:$port" \
      --server-pid "$SPID" --hold "$HOLD" --label "$p" $flags | tee -a /dev/stderr | grep '^RESULT' || true)
    if [ -n "$line" ]; then
      echo "$line rep=$rep" >>"$RESULTS"
    else
      echo "RESULT label=$p rep=$rep failed=1" >>"$RESULTS"
    fi
    stop_server "$SPID"
    port=$((port + 1))
  done
done

python3 "$ROOT/conformance/bench/summarize.py" memory "$RESULTS" | tee "$OUT/memory-table.md"
