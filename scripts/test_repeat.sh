#!/usr/bin/env bash
# `make test-repeat`: the whole suite N times, each run in its own shuffled order; LOAD=1 keeps every core busy
# with a low-priority loop meanwhile. Prints one line per run and a summary; logs in .llmops/test-repeat/.
set -uo pipefail
cd "$(dirname "$0")/.."
N=${N:-3}
LOAD=${LOAD:-0}
PY=${PY:-.venv/bin/python}
LOGS=.llmops/test-repeat
mkdir -p "$LOGS"
hogs=()
cleanup() { for pid in "${hogs[@]:-}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null; done; }
trap cleanup EXIT
if [ "$LOAD" = 1 ]; then
  for _ in $(seq "$(nproc)"); do nice -n 10 "$PY" -c 'while True: pass' & hogs+=($!); done
  echo "CPU load: $(nproc) busy loops at nice 10"
fi
failed=0
for run in $(seq "$N"); do
  seed=$(( (RANDOM << 15) | RANDOM ))
  log="$LOGS/run-$run-seed-$seed.log"
  started=$(date +%s)
  if LLMOPS_TEST_SHUFFLE=$seed "$PY" -m pytest -q -p no:cacheprovider >"$log" 2>&1; then outcome=passed; else
    outcome=FAILED; failed=$((failed + 1)); fi
  echo "run $run/$N seed $seed: $outcome in $(( $(date +%s) - started ))s — $(tail -1 "$log")"
  [ "$outcome" = FAILED ] && grep -E '^(FAILED|ERROR) ' "$log" | sed 's/^/    /'
done
echo "$((N - failed)) of $N runs passed (logs in $LOGS; replay one with LLMOPS_TEST_SHUFFLE=<seed> make test)"
[ "$failed" = 0 ]
