#!/usr/bin/env bash
# Two quick runs with robench's default thread choice: started together, then one after the other.
#   benchmarks/concurrent_runs.sh [WORK_DIR]
set -euo pipefail
work=${1:-$(mktemp -d)}
repo=$(cd "$(dirname "$0")/.." && pwd)
unset OMP_NUM_THREADS
run() { "$repo/.venv/bin/robench" run --suite cardiac-synth --method standard --budget quick --corruptions none \
          --seed "$1" --out "$work/$2" > "$work/$2-$1.log" 2>&1; }
start=$(date +%s.%N)
run 10 together & run 11 together & wait
mid=$(date +%s.%N)
run 10 sequential; run 11 sequential
echo "together $(echo "$mid - $start" | bc) s; one after the other $(echo "$(date +%s.%N) - $mid" | bc) s"
grep -h "threads (" "$work"/*/*/log.txt
