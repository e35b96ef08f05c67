#!/usr/bin/env bash
# Runs the vLLM backend tests in the vLLM environment (created by scripts/vllm_env.sh if needed).
# Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/vllm_env.sh"
cd "$repo"
"$LINGUALIFT_VLLM_PYTHON" -m pytest tests/test_vllm_backend.py "$@"
