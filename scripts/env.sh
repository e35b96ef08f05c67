#!/usr/bin/env bash
# Creates (once) and activates the project's virtual environment with the CPU build of torch.
# Sourced by scripts/main.sh and scripts/test.sh; re-installs only when pyproject/constraints change.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="${LINGUALIFT_VENV:-$repo/.venv}"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  echo "[setup] creating virtual environment in $venv"
  "$python" -m venv "$venv"
fi
# shellcheck disable=SC1091
source "$venv/bin/activate"
# lm-eval has no pins against transformers 5 (its HF model class is an extra we do not use): one environment.
extras="dev,demo,lm-eval"
stamp="$venv/.lingualift-install"
want=$( (cat "$repo/pyproject.toml" "$repo/constraints-cpu.txt"; echo "$extras") | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[setup] installing lingualift and its dependencies (CPU torch) into $venv"
  python -m pip install --quiet --upgrade pip
  python -m pip install --quiet -c "$repo/constraints-cpu.txt" torch
  python -m pip install --quiet -c "$repo/constraints-cpu.txt" -e "$repo[$extras]"
  echo "$want" > "$stamp"
fi
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
export TOKENIZERS_PARALLELISM=false
