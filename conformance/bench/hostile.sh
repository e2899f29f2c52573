#!/usr/bin/env bash
# Hostile clients (issue 14): every scenario of the `hostile` tool
# (conformance/src/bin/hostile.rs) against each adapter's echo_server, a
# fresh server process per scenario, started and killed by PID by the tool.
#
#   conformance/bench/hostile.sh                     # build, then tokio, smol, async-std
#   NO_BUILD=1 ADAPTERS="tokio" CONNS=50 conformance/bench/hostile.sh
#   SCENARIOS=bomb conformance/bench/hostile.sh      # default: deflate-hold,plain-hold,bomb,plain-frame-hold
#   NO_BUILD=1 conformance/bench/hostile.sh path/to/server ...   # any servers instead
#
# Honours CARGO_TARGET_DIR. The binaries run from $CARGO_TARGET_DIR/hostile-bin
# (copies, so a rebuild meanwhile does not change them; NO_BUILD=1 runs the
# copies already there). The three adapters' examples share the name
# echo_server, so they are built one at a time and copied as echo_<adapter>.
# Other knobs: HOLD (s, default 5), EXTRA (more flags for the tool, e.g.
# "--max-rss-mb 8000").
#
# Results: $CARGO_TARGET_DIR/bench/hostile-results.txt (every line the tool
# printed) and hostile-table.md (the Markdown table).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
T=${CARGO_TARGET_DIR:-$ROOT/target}
BIN="$T/hostile-bin"
OUT="$T/bench"
mkdir -p "$BIN" "$OUT"
ADAPTERS=${ADAPTERS:-tokio smol async-std}
CONNS=${CONNS:-200}
HOLD=${HOLD:-5}
SCENARIOS=${SCENARIOS:-deflate-hold,plain-hold,bomb,plain-frame-hold}

freeze() { cp "$1" "$2.tmp" && mv -f "$2.tmp" "$2"; }

if [ "${NO_BUILD:-0}" != 1 ]; then
  echo "==> building (release)" >&2
  cargo build --release -q -p wsmachine-conformance --bin hostile
  freeze "$T/release/hostile" "$BIN/hostile"
  for a in $ADAPTERS; do
    cargo build --release -q -p "wsmachine-$a" --example echo_server
    freeze "$T/release/examples/echo_server" "$BIN/echo_$a"
  done
fi

SERVERS=("$@")
if [ ${#SERVERS[@]} -eq 0 ]; then
  for a in $ADAPTERS; do SERVERS+=("$BIN/echo_$a"); done
fi

RESULTS="$OUT/hostile-results.txt"
TABLE="$OUT/hostile-table.md"
: >"$RESULTS"
{
  echo "# $(date -u +%FT%TZ) $(uname -srm); $(nproc) cores; ulimit -n $(ulimit -n);" \
    "load $(cut -d' ' -f1-3 /proc/loadavg); $(grep MemAvailable /proc/meminfo | tr -s ' ');" \
    "commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
} | tee -a "$RESULTS" >&2

for s in "${SERVERS[@]}"; do
  label=$(basename "$s")
  label=${label#echo_}
  echo "==> $label" >&2
  # shellcheck disable=SC2086
  "$BIN/hostile" --server "$s" --label "$label" --conns "$CONNS" --hold "$HOLD" \
    --scenario "$SCENARIOS" ${EXTRA:-} 2>&1 | tee -a "$RESULTS" || true
  # What else the machine was doing: the load average includes this run.
  echo "# after $label: load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$RESULTS" >&2
done
grep '^|' "$RESULTS" | awk '!seen[$0]++' >"$TABLE"
echo "==> $TABLE" >&2
cat "$TABLE"
