"""Entry point: answer the tasks through the chains into the results table.

spark-submit jobs/run_tasks.py --config conf/local.yaml [--set section.key=value ...]
"""

import sys

from lakechain.cli import main

COMMAND = "run-tasks"

if __name__ == "__main__":
    sys.exit(main([COMMAND, *sys.argv[1:]]))
