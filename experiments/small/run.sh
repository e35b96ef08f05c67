#!/usr/bin/env bash
# The first small experiment (see README.md). Run from the repository root:
#   nohup bash experiments/small/run.sh probe > experiments/small/results/probe.log 2>&1 &
#   nohup bash experiments/small/run.sh main  > experiments/small/results/main.log  2>&1 &
#   bash experiments/small/run.sh ablations   (only if time remains)
#   nohup bash experiments/small/run.sh scale > experiments/small/results/scale.log 2>&1 &
#   nohup bash experiments/small/run.sh scale_ablations > experiments/small/results/scale_ablations.log 2>&1 &
# Checkpoints go to runs/small/ (git-ignored); small results (json/md/png/logs) to experiments/small/results/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=1
PY=.venv/bin/python
LL=.venv/bin/lingualift
DATA=${LINGUALIFT_DATA_DIR:-../shared/data}
R=experiments/small/results
C=experiments/small/configs
mkdir -p "$R" runs/small
stamp() { echo "== $(date -u +%H:%M:%S) $*"; }

probe() {
  # (1) Does the soft prompt carry content? Overfit 8 items; right- vs mismatched-question NLL every 10 steps.
  for spec in "response_lr3e-3:--target response --lr 3e-3 --steps 30" "source_lr3e-3:--target source --lr 3e-3 --steps 20"; do
    name=${spec%%:*}; stamp "probe $name"
    # shellcheck disable=SC2086
    $PY experiments/small/probe.py --name "$name" ${spec#*:} --eval-every 10 --data "$DATA/gsm8k/train.jsonl"
  done
  $PY experiments/small/summarize.py probe
}

prepare_data() {
  # Same GSM8K train rows for every method: English (stage 2, langbridge, sft) and code-switched (stage 1).
  $PY experiments/small/prepare_data.py --data-dir "$DATA" --out runs/small/data --examples 400
}

evaluate() {  # $1 = model dir or spec, $2 = name
  stamp "eval $2"
  $PY experiments/small/evaluate.py --model "$1" --name "$2" --data-dir "$DATA" --out runs/small/eval/"$2" \
    --limit 2 --max-new-tokens 48 --diag-limit 6 --results "$R"
}

main_comparison() {
  # (2) LinguaLIFT vs langbridge vs sft vs zero-shot SmolLM2, same data, same number of optimiser steps (24, batch 4).
  prepare_data
  stamp "zero-shot"; evaluate "$($PY -c 'from lingualift.tools.assets import default_llm_dir; print(default_llm_dir())')" zeroshot
  stamp "lingualift stage 1"; $LL train $C/lingualift_align.yaml
  stamp "lingualift stage 2"; $LL train $C/lingualift_task.yaml
  evaluate runs/small/lingualift_task/final lingualift
  stamp "langbridge"; $LL train $C/langbridge.yaml
  evaluate runs/small/langbridge/final langbridge
  stamp "sft"; $LL train $C/sft.yaml
  evaluate runs/small/sft/final sft
  $PY experiments/small/summarize.py main
  stamp "main comparison done"
}

ablations() {
  # (3) Stage-1 ablations with the probe (content gap on held-out items), only if time remains.
  for spec in "linear:--target response --lr 3e-3 --alignment linear" "chat_template:--target response --lr 3e-3 --chat-template"; do
    name=${spec%%:*}; stamp "ablation $name"
    # shellcheck disable=SC2086
    $PY experiments/small/probe.py --name "$name" ${spec#*:} --steps 20 --eval-every 10 --data "$DATA/gsm8k/train.jsonl" || true
  done
  $PY experiments/small/summarize.py probe
}

scale_run() {  # $1 = name, rest = scale.py flags; one pass over distinct GSM8K rows, MGSM gap curves
  local name=$1; shift
  stamp "scale $name"
  $PY experiments/small/scale.py --name "$name" "$@" --data-dir "$DATA" > "$R/scale/$name.log" 2>&1 || stamp "FAILED $name"
}

scale() {
  # (4) Stage-1 learning curves on unseen items (see README (4)). Two single-thread runs at a time.
  mkdir -p "$R/scale"
  scale_run mlp_lr1e-3 --alignment mlp --lr 1e-3 --steps 300 --final-reference &
  scale_run mlp_lexical_lr1e-4 --alignment mlp --warm-start lexical --lr 1e-4 --steps 300 &
  wait
  $PY experiments/small/encoder_share.py "$DATA" > "$R/scale/encoder_share.txt"
  $PY experiments/small/summarize.py scale
}

# (5) Ablations on top of the lexical warm start, 100 steps (800 examples) each: two chains, run in parallel.
ABLATION=(--warm-start lexical --steps 100 --eval-every 100 --final-items 24)
scale_ablations_a() {
  mkdir -p "$R/scale"
  scale_run lexical_s100 --alignment mlp --lr 1e-4 "${ABLATION[@]}"
  scale_run lexical_both_s100 --alignment mlp --lr 1e-4 --target both "${ABLATION[@]}"
  scale_run lexical_cs0.25_s100 --alignment mlp --lr 1e-4 --codeswitch-ratio 0.25 "${ABLATION[@]}"
}

scale_ablations_b() {
  mkdir -p "$R/scale"
  scale_run lexical_cs0.5_s100 --alignment mlp --lr 1e-4 --codeswitch-ratio 0.5 "${ABLATION[@]}"
  scale_run lexical_cs0.75_s100 --alignment mlp --lr 1e-4 --codeswitch-ratio 0.75 "${ABLATION[@]}"
}

scale_ablations() {
  scale_ablations_a &
  scale_ablations_b &
  wait
  $PY experiments/small/summarize.py scale
}

case "${1:-all}" in
  probe) probe ;;
  main) main_comparison ;;
  ablations) ablations ;;
  scale) scale ;;
  scale_ablations) scale_ablations ;;
  scale_ablations_a) scale_ablations_a ;;
  scale_ablations_b) scale_ablations_b ;;
  all) probe; main_comparison; ablations; scale; scale_ablations ;;
  *) echo "usage: $0 [probe|main|ablations|scale|scale_ablations[_a|_b]|all]" >&2; exit 2 ;;
esac
