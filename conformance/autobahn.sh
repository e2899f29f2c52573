#!/usr/bin/env bash
# Autobahn|Testsuite runner for wsmachine.
#
#   conformance/autobahn.sh [--quick] [--driver] [--only LIST]
#
# Default (what CI runs via WSMACHINE_AUTOBAHN=1 cargo test --test autobahn):
#   - fuzzingclient, all cases      -> wsmachine-tokio echo_server
#   - fuzzingclient, sections 1-10  -> wsmachine-smol and wsmachine-async-std echo_server
#   - fuzzingserver, all cases      <- wsmachine-tokio autobahn_client
#   all four suites run concurrently (12.x/13.x dominate: ~10 min each alone).
# --quick   exclude 12.* and 13.* everywhere (~1 min)
# --driver  test the core through the conformance crate's recording driver
#           (`record serve` / `record autobahn-client`) instead of the adapters
# --only    comma-separated subset of: tokio,smol,async-std,client (default all)
#
# Installs wstest into target/autobahn-venv when missing (../shared/autobahn/setup.sh).
# Reports: conformance/reports/<suite>/ (index.html, index.json, per-case json).
# Exit 0 only if every case of every suite is OK or INFORMATIONAL.
# Only the processes this script starts are stopped, by PID.
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SHARED="${WSMACHINE_SHARED:-$ROOT/../shared}/autobahn"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET" in /*) ;; *) TARGET="$ROOT/$TARGET" ;; esac
VENV="$TARGET/autobahn-venv"
export WSTEST="${WSTEST:-$VENV/bin/wstest}"
REPORTS="$ROOT/conformance/reports"
BIN="$TARGET/autobahn-bin"

QUICK=0; DRIVER=0; ONLY="tokio,smol,async-std,client"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --driver) DRIVER=1 ;;
    --only) ONLY="$2"; shift ;;
    *) sed -n '2,20p' "$0" >&2; exit 1 ;;
  esac
  shift
done
want() { case ",$ONLY," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ ! -x "$WSTEST" ]; then
  echo "==> installing wstest into $VENV"
  bash "$SHARED/setup.sh" "$VENV" || { echo "autobahn.sh: setup.sh failed" >&2; exit 2; }
fi

mkdir -p "$BIN" "$REPORTS"
T0=$(date +%s)
echo "==> building (release)"
if [ $DRIVER -eq 1 ]; then
  cargo build --release -q -p wsmachine-conformance --bin record || exit 2
  cp "$TARGET/release/record" "$BIN/record"
else
  for pkg in tokio smol async-std; do
    if want "$pkg" || { [ "$pkg" = tokio ] && want client; }; then
      ex="--example echo_server"
      [ "$pkg" = tokio ] && ex="$ex --example autobahn_client"
      # shellcheck disable=SC2086
      cargo build --release -q -p "wsmachine-$pkg" $ex || exit 2
      cp "$TARGET/release/examples/echo_server" "$BIN/echo_server-$pkg"
      [ "$pkg" = tokio ] && cp "$TARGET/release/examples/autobahn_client" "$BIN/autobahn_client-tokio"
    fi
  done
fi
echo "    build took $(( $(date +%s) - T0 ))s"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# start_server NAME CMD... : starts an echo server on a port the kernel picks
# (port 0: no window between choosing a free port and binding it, in which
# another process could take it), and sets URL from the address it prints.
start_server() {
  local name="$1"; shift
  local log="$REPORTS/$name.server.log"
  "$@" "127.0.0.1:0" > "$log" 2>&1 &
  PIDS+=($!)
  URL=""
  for _ in $(seq 1 300); do
    URL=$(sed -n 's/^listening on \(ws:\/\/[0-9.:]*\).*/\1/p' "$log" 2>/dev/null | head -1)
    [ -n "$URL" ] && break
    kill -0 "${PIDS[-1]}" 2>/dev/null || { cat "$log" >&2; echo "autobahn.sh: $name echo server died" >&2; exit 2; }
    sleep 0.1
  done
  [ -n "$URL" ] || { cat "$log" >&2; echo "autobahn.sh: $name echo server did not say where it listens" >&2; exit 2; }
}

SECTIONS="1.*,2.*,3.*,4.*,5.*,6.*,7.*,9.*,10.*"
ALL="*"
EXCL=""
[ $QUICK -eq 1 ] && EXCL="12.*,13.*"

SUITES=()
# run_suite NAME MODE TARGET CASES [-- CMD...] (in background; writes $REPORTS/NAME/{run.log,rc,seconds})
run_suite() {
  local name="$1" mode="$2" target="$3"; shift 3
  mkdir -p "$REPORTS/$name"
  rm -f "$REPORTS/$name/seconds" "$REPORTS/$name/rc"
  (
    s=$(date +%s)
    EXCLUDE="$EXCL" AGENT="$name" bash "$SHARED/run.sh" "$mode" "$target" "$REPORTS/$name" "$@" > "$REPORTS/$name/run.log" 2>&1
    echo $? > "$REPORTS/$name/rc"
    echo $(( $(date +%s) - s )) > "$REPORTS/$name/seconds"
  ) &
  PIDS+=($!)
  SUITES+=("$name")
}

# run_server_suite NAME CMD... : wstest's fuzzingserver (all cases) on a
# free port, against our client CMD (`PORT` in its arguments becomes the
# port). The port is probed, then bound by wstest: another process may take
# it in between, so a "cannot listen" failure is retried on a new port (up
# to 3 times) instead of failing the run.
run_server_suite() {
  local name="$1"; shift
  mkdir -p "$REPORTS/$name"
  rm -f "$REPORTS/$name/seconds" "$REPORTS/$name/rc"
  (
    s=$(date +%s)
    for attempt in 1 2 3; do
      port=$(free_port)
      args=()
      for a in "$@"; do args+=("${a//PORT/$port}"); done
      EXCLUDE="$EXCL" AGENT="$name" bash "$SHARED/run.sh" server "$port" "$REPORTS/$name" "$ALL" \
        -- "${args[@]}" > "$REPORTS/$name/run.log" 2>&1
      rc=$?
      grep -qE "CannotListenError|Address already in use" "$REPORTS/$name/run.log" || break
      echo "autobahn.sh: $name: port $port taken before wstest bound it (attempt $attempt)" >&2
    done
    echo $rc > "$REPORTS/$name/rc"
    echo $(( $(date +%s) - s )) > "$REPORTS/$name/seconds"
  ) &
  PIDS+=($!)
  SUITES+=("$name")
}

echo "==> running suites"
if [ $DRIVER -eq 1 ]; then
  start_server driver "$BIN/record" serve
  run_suite driver-server client "$URL" "$ALL"
  run_server_suite driver-client "$BIN/record" autobahn-client "ws://127.0.0.1:PORT" driver-client
else
  if want tokio; then start_server tokio "$BIN/echo_server-tokio"; run_suite tokio-server client "$URL" "$ALL"; fi
  if want client; then
    run_server_suite tokio-client "$BIN/autobahn_client-tokio" "ws://127.0.0.1:PORT" tokio-client
  fi
  if want smol; then start_server smol "$BIN/echo_server-smol"; run_suite smol-server client "$URL" "$SECTIONS"; fi
  if want async-std; then start_server async-std "$BIN/echo_server-async-std"; run_suite async-std-server client "$URL" "$SECTIONS"; fi
fi
# wait for the suites (the echo servers keep running until cleanup)
for name in "${SUITES[@]}"; do
  while [ ! -f "$REPORTS/$name/seconds" ]; do sleep 1; done
done

echo "==> results (only OK and INFORMATIONAL pass)"
python3 - "$REPORTS" "${SUITES[@]}" <<'PY'
import collections, json, os, sys
reports, suites = sys.argv[1], sys.argv[2:]
keys = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
fmt = "{:<18} {:>6} {:>6} {:>10} {:>13} {:>13} {:>6} {:>6} {:>6}"
print(fmt.format("suite", "secs", "OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED", "other", "total"))
bad_any = False
for s in suites:
    d = os.path.join(reports, s)
    secs = open(os.path.join(d, "seconds")).read().strip()
    rc = open(os.path.join(d, "rc")).read().strip()
    try:
        idx = json.load(open(os.path.join(d, "index.json")))
    except Exception as e:
        print(f"{s:<18} {secs:>6}  no report ({e}); run.sh exit {rc}, see {d}/run.log")
        bad_any = True
        continue
    cases = {}
    for agent, cs in idx.items():
        cases.update(cs)
    c = collections.Counter(v["behavior"] for v in cases.values())
    cc = collections.Counter(v["behaviorClose"] for v in cases.values())
    other = sum(n for k, n in c.items() if k not in keys)
    print(fmt.format(s, secs, *[c.get(k, 0) for k in keys], other, len(cases)))
    bad = sorted((k for k, v in cases.items()
                  if v["behavior"] not in ("OK", "INFORMATIONAL")
                  or v["behaviorClose"] not in ("OK", "INFORMATIONAL")),
                 key=lambda s: [int(x) for x in s.split(".")])
    if bad or rc != "0" or not cases:
        bad_any = True
    if bad:
        print("    not OK: " + " ".join(f"{k}({cases[k]['behavior']}/{cases[k]['behaviorClose']})" for k in bad[:80]))
    if rc != "0":
        print(f"    run.sh exited {rc}: see {d}/run.log")
sys.exit(1 if bad_any else 0)
PY
RC=$?
echo "==> total $(( $(date +%s) - T0 ))s; reports in $REPORTS"
exit $RC
