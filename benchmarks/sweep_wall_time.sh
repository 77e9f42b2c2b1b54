#!/usr/bin/env bash
# Issue 16's timing: one cardiac-synth quick sweep (3 methods × 3 seeds) through `--launcher local --workers 2`
# (one thread per worker), then the same runs one after another (`--workers 1`, two threads per run), each into
# a fresh folder; prints both wall times and checks that the two sweeps' records are equal run by run.
#   benchmarks/sweep_wall_time.sh [WORK_DIR] [METHODS] [SEEDS] [BUDGET]
# Needs a quiet machine: anything else on the cores is counted in both times.
set -euo pipefail
work=${1:-$(mktemp -d)}
methods=${2:-standard,adv-bias,coop-latent}
seeds=${3:-0-2}
budget=${4:-quick}
repo=$(cd "$(dirname "$0")/.." && pwd)
export ROBENCH_HOME=${ROBENCH_HOME:-$work/home}
unset OMP_NUM_THREADS
mkdir -p "$work"
sweep() {  # $1 folder, $2 workers, $3 threads per worker
  "$repo/.venv/bin/robench" sweep --suite cardiac-synth --methods "$methods" --seeds "$seeds" --budget "$budget" \
    --launcher local --workers "$2" --threads "$3" --out "$work/$1" > "$work/$1.log" 2>&1
}
"$repo/.venv/bin/python" -c "from robench.benchmark.suites.synth import ensure_cardiac_synth; ensure_cardiac_synth()"
start=$(date +%s)
sweep parallel 2 1
mid=$(date +%s)
sweep serial 1 2
end=$(date +%s)
echo "workers 2 × 1 thread: $((mid - start)) s; one after the other (2 threads): $((end - mid)) s"
"$repo/.venv/bin/python" - "$work" <<'EOF'
import sys
from pathlib import Path

import pandas as pd

work = Path(sys.argv[1])
for run in sorted(p.parent for p in (work / "parallel").glob("*/done.json")):
    a = pd.read_parquet(run / "records.parquet")
    b = pd.read_parquet(work / "serial" / run.name / "records.parquet")
    diff = (a["dice"] - b["dice"]).abs().max()
    print(f"{run.name}: {len(a)} records, max |Δ dice| between the sweeps {diff:.2e}")
EOF
