"""Fixtures of the chaos module: small inputs and one uninterrupted reference run.

Run on its own (``pytest tests/chaos``); the default ``pytest`` leaves it out (it takes
minutes). Every test drives ``lakechain pipeline`` in processes of its own.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from harness import CORPUS_FILES, REPO, TASK_LINES, Run, Timeline, pipeline_args
from invariants import Rows, check_root, check_settled


@dataclass(frozen=True)
class Inputs:
    corpus: Path
    tasks: Path

    def args(self, root: Path) -> list[str]:
        return pipeline_args(root, self.corpus, self.tasks)


@dataclass(frozen=True)
class Reference:
    """An uninterrupted run: its root, its rows (what every chaos run must end with) and
    its stage timeline (what kill moments are drawn from)."""

    root: Path
    rows: Rows
    timeline: Timeline
    disk_kib: dict[str, int]
    """The root's disk use as each stage started, and at the end."""
    events: dict[str, float]
    """Seconds after start at which each first-run event was seen (``harness.first_run_events``)."""


@pytest.fixture(scope="session")
def chaos_inputs(tmp_path_factory) -> Inputs:
    """A slice of the sample corpus and tasks: every input kind, a few commit batches each."""
    base = tmp_path_factory.mktemp("chaos-inputs")
    corpus = base / "corpus"
    corpus.mkdir()
    for name in CORPUS_FILES:
        src = REPO / "data" / "corpus" / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, corpus / name)
    lines = (REPO / "data" / "tasks.jsonl").read_text().splitlines()
    tasks = base / "tasks.jsonl"
    tasks.write_text("".join(lines[i] + "\n" for i in TASK_LINES))
    return Inputs(corpus, tasks)


@pytest.fixture(scope="session")
def reference(chaos_inputs, tmp_path_factory) -> Reference:
    """The pipeline run once, uninterrupted, on a fresh root."""
    root = tmp_path_factory.mktemp("chaos-reference") / "lake"
    run = Run(chaos_inputs.args(root))
    disk, events = run.wait_measuring(root)
    assert run.proc.returncode == 0, run.text("err")[-4000:]
    timeline = Timeline.of(run)
    stages = ", ".join(f"{s} {a:.1f}-{b:.1f} s" for s, (a, b) in timeline.windows.items())
    print(f"\nreference run: {timeline.total:.1f} s; stages {stages}; disk use KiB {disk}")
    print(f"first-run events (s after start): {events}")
    rows = check_root(root)
    check_settled(root, rows)
    return Reference(root, rows, timeline, disk, events)
