"""Entry point: build the FAISS index from the chunks table.

spark-submit jobs/build_index.py --config conf/local.yaml [--set section.key=value ...]
"""

import sys

from lakechain.cli import main

COMMAND = "index"

if __name__ == "__main__":
    sys.exit(main([COMMAND, *sys.argv[1:]]))
