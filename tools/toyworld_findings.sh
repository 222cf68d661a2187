#!/usr/bin/env bash
# The toy world's answers to the HF DreamBooth post's questions: runs every sweeps/toyworld_*
# preset, then writes one report per sweep. About 40 CPU-minutes on 2 cores (1 thread per run).
#   bash tools/toyworld_findings.sh [extra overrides, e.g. tracker=disk]
# Sweeps go to outputs/findings/<preset>, reports to reports/findings/<preset>/index.html.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
presets=${PRESETS:-lr_steps prior text_encoder ema schedulers}
for preset in $presets; do
  echo "== toyworld_$preset"
  TIMEFORMAT="toyworld_$preset: %R s wall, %U s user, %S s sys (CPU time incl. its runs)"
  time "$python" train.py -m "+sweep=toyworld_$preset" "hydra.sweep.dir=outputs/findings/$preset" "$@"
  "$python" -m dreamsweep.report "outputs/findings/$preset" --out "reports/findings/$preset"
done
