"""Entry point: embed → index → run-tasks on the configured corpus and tasks.

spark-submit jobs/pipeline.py --config conf/local.yaml [--set section.key=value ...]
"""

import sys

from lakechain.cli import main

COMMAND = "pipeline"

if __name__ == "__main__":
    sys.exit(main([COMMAND, *sys.argv[1:]]))
