#!/usr/bin/env bash
# Builds llama-cpp-python (the `[llamacpp]` extra) for *this* CPU and installs it into the main .venv.
# Its pins (numpy, jinja2, diskcache, typing-extensions) fit the main environment, so no venv of its own.
# The build is native (-march=native: AVX2/AVX-512/AMX kernels as the CPU has them), so a wheel built on
# one CPU kind may crash with SIGILL on another: the build is keyed by the CPU's flags, the compiler and
# the build options, kept per key under ~/.cache/lingualift/llamacpp/wheels, and reinstalled whenever the
# key of the installed one differs. The key is also written next to the venv, and the backend refuses to
# start when it does not match the CPU it runs on (lingualift.inference.llamacpp_engine.check_build).
# The unpacked sdist is kept too (its path is the stamp's third line): its vendor/llama.cpp/convert_hf_to_gguf.py
# converts checkpoints to GGUF.
# Source it or run it; idempotent (a few seconds when nothing changed; ~5-10 min to build on 2 cores).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="${LINGUALIFT_VENV:-$repo/.venv}"
python="$venv/bin/python"
version="${LINGUALIFT_LLAMACPP_VERSION:-0.3.36}"
cache="${LINGUALIFT_CACHE:-$HOME/.cache/lingualift}/llamacpp"
cmake_args="-DGGML_NATIVE=ON -DGGML_OPENMP=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAVA_BUILD=OFF"
cpu_flags=$(grep -m1 -E '^(flags|Features)' /proc/cpuinfo | cut -d: -f2 | tr ' ' '\n' | sort -u | tr '\n' ' ')
compiler=$( (${CC:-cc} --version 2>/dev/null || true) | head -1)
key=$(printf '%s\n' "$version" "$cmake_args" "$(uname -m)" "$cpu_flags" "$compiler" | sha256sum | cut -c1-16)
stamp="$venv/.lingualift-llamacpp-build"
sdist_dir="$cache/src/llama_cpp_python-$version"
if [ ! -x "$python" ]; then
  echo "[llamacpp-env] no environment at $venv: run scripts/env.sh first (or set LINGUALIFT_VENV)" >&2
  exit 1
fi
if [ ! -f "$sdist_dir/vendor/llama.cpp/convert_hf_to_gguf.py" ]; then
  echo "[llamacpp-env] fetching the llama-cpp-python $version sdist"
  mkdir -p "$cache/src"
  tmp=$(mktemp -d "$cache/src/.download-XXXXXX")
  "$python" -m pip download --quiet --no-deps --no-binary :all: -d "$tmp" "llama-cpp-python==$version"
  tar -xzf "$tmp"/llama_cpp_python-"$version".tar.gz -C "$tmp"
  mv "$tmp/llama_cpp_python-$version" "$sdist_dir.partial" && mv "$sdist_dir.partial" "$sdist_dir"
  mv "$tmp"/llama_cpp_python-"$version".tar.gz "$cache/src/" && rm -rf "$tmp"
fi
if [ ! -f "$stamp" ] || [ "$(head -1 "$stamp")" != "$key" ] || [ "$(sed -n 3p "$stamp")" != "$sdist_dir" ]; then
  wheels="$cache/wheels/$key"
  if ! ls "$wheels"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    echo "[llamacpp-env] building llama-cpp-python $version for this CPU (key $key; several minutes)"
    mkdir -p "$cache/wheels" && rm -rf "$wheels.partial"
    CMAKE_ARGS="$cmake_args" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
      "$python" -m pip wheel --quiet --no-deps -w "$wheels.partial" "$cache/src/llama_cpp_python-$version.tar.gz"
    mv "$wheels.partial" "$wheels"
  fi
  "$python" -m pip install --quiet --force-reinstall --no-deps "$wheels"/llama_cpp_python-*.whl
  "$python" -m pip install --quiet "numpy>=1.20" "typing-extensions>=4.5" "diskcache>=5.6.1" "jinja2>=2.11.3" "gguf>=0.10"
  printf '%s\n%s\n%s\n' "$key" "$cpu_flags" "$sdist_dir" > "$stamp"
fi
"$python" -c "import llama_cpp; print('[llamacpp-env] llama-cpp-python', llama_cpp.__version__, 'built for this CPU')"
export LINGUALIFT_LLAMACPP_SOURCE="$sdist_dir"
