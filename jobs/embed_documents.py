"""Entry point: ingest the corpus, chunk and embed it into the chunks table.

spark-submit jobs/embed_documents.py --config conf/local.yaml [--set section.key=value ...]
"""

import sys

from lakechain.cli import main

COMMAND = "embed"

if __name__ == "__main__":
    sys.exit(main([COMMAND, *sys.argv[1:]]))
