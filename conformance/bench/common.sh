# Shared by echo.sh and idle_memory.sh: build, start and stop servers.
# Every server started is recorded in STARTED and killed by PID on exit.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
# Cargo puts release binaries here (CARGO_TARGET_DIR when set).
R="${CARGO_TARGET_DIR:-$ROOT/target}/release"
# The load generator and servers run from here (see build_all).
BIN="$ROOT/target/bench-bin"
OUT="$ROOT/target/bench"
mkdir -p "$BIN" "$OUT"
STARTED=()

cleanup() {
  local pid
  for pid in "${STARTED[@]:-}"; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
  for pid in "${STARTED[@]:-}"; do
    [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Enough descriptors for 10 000 connections, here and in every server we start.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# Builds every binary in release and copies it to target/bench-bin, so the
# runs use a fixed set of binaries even if the workspace is rebuilt
# meanwhile (NO_BUILD=1 runs the copies already there).
# Copies by rename, so a copy still running elsewhere does not block it.
freeze() { cp "$1" "$2.tmp" && mv -f "$2.tmp" "$2"; }

build_all() {
  echo "==> building (release)" >&2
  cargo build --release -q -p wsmachine-conformance --bin loadgen --examples
  freeze "$R/loadgen" "$BIN/loadgen"
  local e
  for e in peer_tungstenite_echo peer_fastwebsockets_echo peer_tokio_websockets_echo \
    peer_wtx_echo peer_wsmachine_forward_echo peer_wsmachine_core_echo; do
    freeze "$R/examples/$e" "$BIN/$e"
  done
  # The three adapters' examples share a name: build and copy them one by one.
  local a
  for a in tokio smol async-std; do
    cargo build --release -q -p "wsmachine-$a" --example echo_server
    freeze "$R/examples/echo_server" "$BIN/echo_$a"
  done
}

# The command line of a server by name; its listen address is the argument.
# Leading VAR=VALUE words are environment variables (start_server runs it
# through env).
server_cmd() {
  case "$1" in
    # NAME@before: the same server from binaries frozen earlier in
    # BEFORE_BIN (a copy of an older target/bench-bin), for an A/B in one run.
    # First, so that it also applies to the patterns below (preset-*).
    *@before)
      [ -n "${BEFORE_BIN:-}" ] || { echo "server $1 needs BEFORE_BIN=/dir/of/older/bench-bin" >&2; return 1; }
      local BIN=$BEFORE_BIN
      server_cmd "${1%@before}" ;;
    wsmachine-tokio) echo "$BIN/echo_tokio" ;;
    wsmachine-smol) echo "$BIN/echo_smol" ;;
    wsmachine-async-std) echo "$BIN/echo_async-std" ;;
    wsmachine-tokio-forward) echo "$BIN/peer_wsmachine_forward_echo" ;;
    wsmachine-core) echo "$BIN/peer_wsmachine_core_echo" ;;
    tokio-tungstenite) echo "$BIN/peer_tungstenite_echo" ;;
    # Read a message, send it (one flush per message), like our echo_server.
    tokio-tungstenite-send-each) echo "TT_MODE=send-each $BIN/peer_tungstenite_echo" ;;
    fastwebsockets) echo "$BIN/peer_fastwebsockets_echo" ;;
    tokio-websockets) echo "$BIN/peer_tokio_websockets_echo" ;;
    wtx) echo "$BIN/peer_wtx_echo" ;;
    raw-tcp) echo "$BIN/loadgen --max-secs 3600 --raw-echo-server" ;;
    # uWebSockets (C++), optional: never built here; UWS_ECHO names a binary
    # built by ../shared/peers/uws/build.sh (echo.sh lists it only then).
    uws)
      [ -n "${UWS_ECHO:-}" ] || { echo "server uws needs UWS_ECHO=/path/to/uws_echo" >&2; return 1; }
      echo "$UWS_ECHO" ;;
    # Compressed echo (deflate_echo.sh): wtx and Node ws with permessage-deflate.
    wtx+deflate) echo "WTX_DEFLATE=1 $BIN/peer_wtx_echo" ;;
    node-ws+deflate) echo "NODE_PATH=$NODE_MODULES node $ROOT/conformance/bench/node_ws_echo.js deflate" ;;
    # A wsmachine echo server with a deflate preset (memory_presets.sh).
    preset-*) echo "$BIN/fanout_server --variant echo --max-secs 3600 --preset ${1#preset-}" ;;
    *) echo "unknown server $1" >&2; return 1 ;;
  esac
}

# start_server NAME PORT [VAR=VALUE...]: starts it (with those environment
# variables), waits for "listening on", sets SPID.
start_server() {
  local name=$1 port=$2 log="$OUT/server-$1.log"
  shift 2
  # PIN_SERVER=CPU runs the server on that CPU only (taskset execs it:
  # the PID stays the server's).
  local pin=()
  [ -n "${PIN_SERVER:-}" ] && pin=(taskset -c "$PIN_SERVER")
  # A log left by an earlier server of the same name would say "listening"
  # before this one does.
  rm -f "$log"
  # shellcheck disable=SC2046
  "${pin[@]}" env "$@" $(server_cmd "$name") "127.0.0.1:$port" >"$log" 2>&1 &
  SPID=$!
  STARTED+=("$SPID")
  local i
  for i in $(seq 100); do
    grep -q "listening on" "$log" && return 0
    kill -0 "$SPID" 2>/dev/null || break
    sleep 0.1
  done
  echo "server $name did not start; see $log" >&2
  return 1
}

# Bounded: SIGTERM, up to 5 s to exit, then SIGKILL (by PID).
stop_server() {
  kill "$1" 2>/dev/null || true
  local i
  for i in $(seq 50); do
    kill -0 "$1" 2>/dev/null || break
    sleep 0.1
  done
  kill -9 "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

wait_for_quiet() {
  # QUIET_LOAD=1.5 QUIET_WAIT=1800: wait (polling each minute) for the
  # 1-minute load average to fall below QUIET_LOAD, at most QUIET_WAIT s.
  local limit=${QUIET_LOAD:-} waited=0
  [ -z "$limit" ] && return 0
  while :; do
    local load
    load=$(cut -d' ' -f1 /proc/loadavg)
    if awk "BEGIN{exit !($load < $limit)}"; then
      echo "==> load average $load < $limit" >&2
      return 0
    fi
    if [ "$waited" -ge "${QUIET_WAIT:-1800}" ]; then
      echo "==> load average still $load after ${waited}s: running anyway" >&2
      return 0
    fi
    echo "==> load average $load >= $limit, waiting" >&2
    sleep 60
    waited=$((waited + 60))
  done
}
