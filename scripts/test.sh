#!/usr/bin/env bash
# Runs the test suite (installs the environment first if needed).
# Extra arguments go to pytest in the main environment, and only that runs. With none, the suites that live in
# environments of their own (the vLLM engine, ...) run too, each in its environment: always under CI (CI=true;
# building the environment if needed), elsewhere when it is already built (bash scripts/vllm_env.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$repo"
if [ $# -gt 0 ]; then
  exec python -m pytest "$@"
fi
case "${CI:-}" in 1|true|TRUE|True|yes) in_ci=1 ;; *) in_ci=0 ;; esac

main_args=()
own_suites=()
# A suite with an environment of its own: its test file (left out of the main run when the suite runs), the
# script that runs it there, and the environment's folder.
own_suite() {
  if [ "$in_ci" = 1 ] || [ -x "$3/bin/python" ]; then
    main_args+=(--ignore "$1")
    own_suites+=("$2")
  fi
}
own_suite tests/test_vllm_backend.py scripts/test_vllm.sh "${LINGUALIFT_VLLM_VENV:-$repo/.venv-vllm}"

failed=()
echo "[test] main environment ($venv)"
python -m pytest "${main_args[@]}" || failed+=("main")
for suite in "${own_suites[@]}"; do
  echo "[test] $suite"
  bash "$suite" || failed+=("$suite")
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "[test] FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "[test] all suites passed: main${own_suites[*]:+ ${own_suites[*]}}"
