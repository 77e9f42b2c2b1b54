#!/usr/bin/env bash
# `make run` without the install, at an older commit and at the working tree, back to back.
#   benchmarks/compare_make_run.sh OLD_COMMIT [WORK_DIR]
# Both use this checkout's .venv and one ROBENCH_HOME (warm it first, e.g. with one run, so that
# neither pays the synthetic-data generation). Each run starts in its own source tree: with
# `python -m`, the current folder comes first on sys.path, ahead of PYTHONPATH.
set -euo pipefail
old=${1:?usage: $0 OLD_COMMIT [WORK_DIR]}
work=${2:-$(mktemp -d)}
repo=$(cd "$(dirname "$0")/.." && pwd)
py="$repo/.venv/bin/python"
git -C "$repo" worktree add -f --detach "$work/old" "$old" >/dev/null
trap 'git -C "$repo" worktree remove --force "$work/old"' EXIT
for side in old new; do
  src=$([ $side = old ] && echo "$work/old" || echo "$repo")
  start=$(date +%s.%N)
  (cd "$src" && "$py" -m robench run --suite cardiac-synth --method standard --seed 0 --budget quick \
      --out "$work/runs-$side" --resume > "$work/$side.log" 2>&1 \
   && "$py" -m robench leaderboard "$work/runs-$side" --format markdown > "$work/$side.md")
  echo "$side: $(echo "$(date +%s.%N) - $start" | bc) s"
done
