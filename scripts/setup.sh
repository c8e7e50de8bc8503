#!/usr/bin/env bash
# Create .venv and install Lakechain with the embedded default models (CPU only).
#   scripts/setup.sh          runtime: pyspark, Delta (delta-rs), FAISS, LangChain, local models
#   scripts/setup.sh --dev    plus pytest, ruff and the LangChain FAISS interop
set -euo pipefail
cd "$(dirname "$0")/.."
extras="local"
[[ "${1:-}" == "--dev" ]] && extras="local,dev"
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip setuptools wheel
# The CPU torch wheel first: an unpinned torch would pull a multi-GB CUDA build.
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -c constraints.txt -e ".[${extras}]"
command -v java >/dev/null || { echo "Java 17+ is required by Spark (apt-get install openjdk-17-jre-headless)" >&2; exit 1; }
echo "lakechain installed in .venv ($(.venv/bin/python -c 'import lakechain; print(lakechain.__version__)'))"
