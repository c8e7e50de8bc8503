"""Entry point: build the FAISS index from the chunks table.

    spark-submit jobs/build_index.py --config conf/local.yaml [--set section.key=value ...]
"""

import sys

from _entry import run

COMMAND = "index"

if __name__ == "__main__":
    sys.exit(run(COMMAND))
