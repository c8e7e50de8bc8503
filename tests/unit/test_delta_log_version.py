"""The table version read from a local Delta log's file names (no Spark job)."""

from __future__ import annotations

from lakechain.storage.tables import _log_version


def test_the_newest_commit_file_names_the_version(tmp_path):
    log = tmp_path / "_delta_log"
    log.mkdir()
    for name in [
        "00000000000000000003.json",
        "00000000000000000010.json",
        "00000000000000000010.checkpoint.parquet",
        "00000000000000000011.crc",  # a checksum is no commit
        ".00000000000000000012.json.tmp",  # nor is an uncommitted temp file
        "_last_checkpoint",
    ]:
        (log / name).write_text("")
    assert _log_version(str(log)) == 10


def test_no_log_or_no_commit_gives_none_so_the_caller_asks_delta(tmp_path):
    assert _log_version(str(tmp_path / "missing")) is None
    (tmp_path / "_delta_log").mkdir()
    assert _log_version(str(tmp_path / "_delta_log")) is None
