#!/usr/bin/env bash
# GPU check (issue 15): the paper's shapes on one GPU, in one prepared run of at most 8 minutes.
#
#   OUT=/path/to/results bash scripts/gpu_check.sh           # GPU machine (one H200), from the repository root
#   bash scripts/gpu_check.sh /tmp/gpu-check --cpu-dry-run     # CPU: every sub-check end to end on tiny shapes
#
# Runs the package from the source tree (PYTHONPATH=src; nothing is installed, no weights travel: every
# model is randomly initialised from a config). Needs torch, transformers, accelerate, peft, safetensors,
# tokenizers, sentencepiece, plus pyyaml and tqdm (dependencies of transformers / accelerate; the `env`
# sub-check names any that is missing). Writes gpu_check.json / gpu_check.md (summary), checks/*.json and
# logs/*.log into the output folder. Extra arguments go to scripts/gpu_check.py (see its --help).
# PYTHON picks the interpreter (default python3); GPU_CHECK_HARD_LIMIT the hard wall-clock limit in s.
set -uo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out="${OUT:-}"
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  out="$1"
  shift
fi
if [ -z "$out" ]; then
  echo "error: give the results folder as the first argument or in \$OUT" >&2
  exit 2
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)
export PYTHONPATH="$repo/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TQDM_DISABLE=1
python="${PYTHON:-python3}"
cd "$repo"
# The driver keeps its own budget (420 s on a GPU) and time-boxes every sub-check; this is the backstop.
limit="${GPU_CHECK_HARD_LIMIT:-465}"
case " $* ${GPU_CHECK_CPU_DRY_RUN:+--cpu-dry-run}" in
  *" --cpu-dry-run"*) limit="${GPU_CHECK_HARD_LIMIT:-1260}" ;;  # CPU dry run: the driver's budget is 1200 s
esac
timeout -k 10 "$limit" "$python" scripts/gpu_check.py "$out" "$@" 2>&1 | tee "$out/gpu_check.log"
rc=${PIPESTATUS[0]}
if [ "$rc" -eq 124 ]; then
  echo "gpu_check: stopped by the hard limit of ${limit} s; see $out/gpu_check.md (partial)" >&2
fi
exit "$rc"
