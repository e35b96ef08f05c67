#!/usr/bin/env bash
# Builds (or reuses) the llama.cpp backend for this CPU in the main environment and runs its tests for real:
# with LINGUALIFT_REQUIRE_LLAMACPP=1 a missing binding fails the tests instead of skipping them.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck disable=SC1091
source "$repo/scripts/env.sh"
# shellcheck disable=SC1091
source "$repo/scripts/llamacpp_env.sh"
cd "$repo"
LINGUALIFT_REQUIRE_LLAMACPP=1 python -m pytest tests/test_llamacpp_backend.py "tests/test_bad_inputs.py::test_llamacpp_bad_input" -q "$@"
