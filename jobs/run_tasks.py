"""Entry point: answer the tasks through the chains into the results table.

    spark-submit jobs/run_tasks.py --config conf/local.yaml [--set section.key=value ...]
"""

import sys

from _entry import run

COMMAND = "run-tasks"

if __name__ == "__main__":
    sys.exit(run(COMMAND))
