"""A root's Derby catalog left half-made by a killed first run is set aside before a JVM
opens it; a whole one is never touched. Read-only commands run as readers (no lock)."""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path

import pytest

from lakechain import cli
from lakechain.config import load_settings
from lakechain.storage import session
from lakechain.storage.session import METASTORE_DB, METASTORE_DIR, lock_metastore, repair_catalog

WHOLE = (
    "#/root/_metastore/metastore_db\n"
    "derby.serviceProtocol=org.apache.derby.database.Database\n"
    "#--- last line, don't put anything after this line ---\n"
)


def derby_dir(meta: Path, service_properties: str | None) -> Path:
    """A Derby database directory as a kill may leave it: seg0/log made, and
    ``service.properties`` whole, cut short, or not yet written (None)."""
    db = meta / METASTORE_DB
    (db / "seg0").mkdir(parents=True)
    (db / "log").mkdir()
    (db / "seg0" / "c10.dat").write_bytes(b"\0" * 64)
    if service_properties is not None:
        (db / "service.properties").write_text(service_properties)
    return db


@pytest.mark.parametrize("props", [None, WHOLE[:60]], ids=["no service.properties", "cut short"])
def test_half_made_catalog_is_set_aside_with_one_line(tmp_path, caplog, props):
    db = derby_dir(tmp_path, props)
    with caplog.at_level(logging.WARNING, logger="lakechain.storage.session"):
        aside = repair_catalog(str(tmp_path))
    assert aside is not None and not db.exists()
    assert Path(aside).parent == tmp_path
    assert (Path(aside) / "seg0" / "c10.dat").is_file()  # kept, not deleted
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "half-made" in lines[0] and os.path.basename(aside) in lines[0]


@pytest.mark.parametrize("case", ["whole", "derby's backup", "none yet"])
def test_whole_catalog_or_none_is_left_alone(tmp_path, case):
    if case == "whole":
        db = derby_dir(tmp_path, WHOLE)
    elif case == "derby's backup":  # Derby rewrites service.properties from this one itself
        db = derby_dir(tmp_path, None)
        (db / "service.propertiesold").write_text(WHOLE)
    else:
        db = tmp_path / METASTORE_DB
    assert repair_catalog(str(tmp_path)) is None
    assert db.exists() == (case != "none yet")
    assert [p.name for p in tmp_path.iterdir() if "half-made" in p.name] == []


def test_taking_the_root_repairs_its_catalog(tmp_path, monkeypatch):
    """The lock is what every Derby opener takes first: the repair runs under it."""
    settings = load_settings(None, [f"storage.root={tmp_path}"])
    meta = tmp_path / METASTORE_DIR
    derby_dir(meta, None)
    monkeypatch.setattr(session, "_HELD_LOCKS", {})
    lock_metastore(settings)
    fd = session._HELD_LOCKS[str(meta)]
    try:
        assert not (meta / METASTORE_DB).exists()
        assert len([p for p in meta.iterdir() if p.name.startswith(f"{METASTORE_DB}.half-made-")]) == 1
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@pytest.mark.parametrize(
    ("query", "reads"),
    [
        ("SELECT count(*) FROM results", True),
        ("  -- how many\n  select 1", True),
        ("/* note */ WITH t AS (SELECT 1) SELECT * FROM t", True),
        ("(SELECT 1) UNION (SELECT 2)", True),
        ("SHOW TABLES", True),
        ("DESCRIBE HISTORY lakechain.chunks", True),
        ("EXPLAIN SELECT 1", True),
        ("DELETE FROM results WHERE task_id = 'x'", False),
        ("CREATE VIEW v AS SELECT 1", False),
        ("INSERT INTO runs SELECT * FROM runs", False),
        ("selected", False),
    ],
)
def test_sql_statements_that_only_read_run_as_readers(query, reads):
    assert cli.read_only_sql(query) is reads


@pytest.mark.parametrize(
    ("argv", "reader"),
    [
        (["sql", "SELECT 1"], True),
        (["sql", "DROP VIEW lakechain.qa_results"], False),
        (["report"], True),
        (["cache", "stats"], True),
        (["cache", "clear"], False),
        (["eval", "--no-write"], True),
        (["eval"], False),
        (["run-tasks"], False),
    ],
)
def test_commands_that_only_read_ask_for_a_reader_session(tmp_path, monkeypatch, argv, reader):
    """Readers never take the root's lock; writers still do (``storage.session``)."""
    asked: list[bool] = []

    class Stop(Exception):
        pass

    def fake_session(settings, ctx, reader=False):
        asked.append(reader)
        raise Stop

    monkeypatch.setattr(cli, "_session", fake_session)
    monkeypatch.setattr(cli, "is_user_error", lambda exc: False)
    with pytest.raises(Stop):
        cli.main([*argv, "--set", f"storage.root={tmp_path}", "--set", f"tasks.path={tmp_path}"])
    assert asked == [reader]
