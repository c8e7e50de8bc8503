"""Config: relative paths against the config file, provider key variables, chunk overlap."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from lakechain.config import ConfigError, load_settings
from lakechain.embed.chunking import chunk_text, tokenizer_for

REPO = Path(__file__).resolve().parents[2]


def _write_config(directory: Path, body: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "lake.yaml"
    path.write_text(body)
    return path


def test_relative_paths_in_a_config_file_resolve_against_its_directory(tmp_path, monkeypatch):
    conf = _write_config(
        tmp_path / "project" / "conf",
        "storage: {root: ./lake, volume: ~/vol}\ncorpus: {path: ../docs}\ntasks: {path: ./tasks.jsonl}\n",
    )
    monkeypatch.chdir(tmp_path)  # anywhere but the config's directory
    s = load_settings(os.path.relpath(conf))
    assert s.storage.root == str(tmp_path / "project" / "conf" / "lake")
    assert s.corpus.path == str(tmp_path / "project" / "docs")
    assert s.tasks.path == str(tmp_path / "project" / "conf" / "tasks.jsonl")
    assert s.storage.volume == os.path.expanduser("~/vol")


def test_set_paths_resolve_against_the_current_directory(tmp_path, monkeypatch):
    conf = _write_config(tmp_path / "conf", "storage: {root: ./lake}\n")
    monkeypatch.chdir(tmp_path)
    s = load_settings(conf, ["storage.root=out/lake", "corpus.path=my docs"])
    assert s.storage.root == str(tmp_path / "out" / "lake")
    assert s.corpus.path == str(tmp_path / "my docs")


def test_uris_absolute_paths_and_table_names_are_left_as_written(tmp_path):
    conf = _write_config(
        tmp_path,
        "storage: {root: 'dbfs:/mnt/lake', volume: /Volumes/main/lc/files}\n"
        "corpus: {path: main.lakechain.docs}\ntasks: {path: tasks}\n",
    )
    s = load_settings(conf, ["spark.conf.spark.sql.warehouse.dir=rel"])
    assert (s.storage.root, s.storage.volume) == ("dbfs:/mnt/lake", "/Volumes/main/lc/files")
    assert (s.corpus.path, s.tasks.path) == ("main.lakechain.docs", "tasks")
    assert s.spark.conf["spark.sql.warehouse.dir"] == "rel"  # not a path key


def test_local_yaml_points_at_the_repository_data_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = load_settings(REPO / "conf" / "local.yaml")
    assert s.storage.root == str(REPO / "lakechain-data")
    assert s.corpus.path == str(REPO / "data" / "corpus") and os.path.isdir(s.corpus.path)
    assert s.tasks.path == str(REPO / "data" / "tasks.jsonl") and os.path.isfile(s.tasks.path)


@pytest.mark.parametrize(
    ("provider", "env"), [("openai", "OPENAI_API_KEY"), ("azure_openai", "AZURE_OPENAI_API_KEY")]
)
def test_unset_api_key_defaults_to_the_providers_variable(monkeypatch, provider, env):
    monkeypatch.setenv(env, "sk-from-env")
    s = load_settings(None, [f"chat.provider={provider}", f"images.provider={provider}"])
    assert s.chat.api_key is not None and s.chat.api_key.get_secret_value() == "sk-from-env"
    assert s.images.api_key is not None and s.images.api_key.get_secret_value() == "sk-from-env"
    assert s.embedding.api_key is None  # still local: no key needed, none taken
    assert "sk-from-env" not in str(s.safe_dump())


def test_openai_compatible_never_takes_the_openai_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-real-openai")
    s = load_settings(None, ["chat.provider=openai_compatible", "chat.base_url=http://other:8000/v1"])
    assert s.chat.api_key is None


def test_missing_key_error_names_the_default_variable(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    s = load_settings(None, ["embedding.provider=openai", "embedding.model=text-embedding-3-small"])
    want = r"embedding\.api_key.*defaults to \$\{env:OPENAI_API_KEY\}, which is not set: export"
    with pytest.raises(ConfigError, match=want):
        s.embedding.check_remote("embedding")


@pytest.mark.parametrize("overlap", [200, 250])
def test_overlap_not_below_chunk_size_is_refused_at_start(overlap):
    with pytest.raises(ConfigError) as exc:
        load_settings(None, ["chunking.chunk_tokens=200", f"chunking.overlap_tokens={overlap}"])
    assert str(exc.value) == (
        "invalid configuration: chunking.overlap_tokens: must be less than chunking.chunk_tokens (200); "
        f"lower it or raise chunk_tokens (got {overlap})"
    )


def test_chunker_refuses_overlap_not_below_size_instead_of_clamping():
    with pytest.raises(ValueError, match=r"overlap_tokens \(64\)"):
        chunk_text("d", "Some text. More text.", tokenizer_for("local"), chunk_tokens=64, overlap_tokens=64)


def test_overlap_above_half_the_chunk_is_honoured():
    """It used to be clamped silently to half the chunk (50 of 100 tokens here)."""
    local = tokenizer_for("local")
    rng = random.Random(5)
    text = " ".join(f"w{rng.randint(0, 10**6)}" for _ in range(3000))  # one sentence: token windows
    chunks = chunk_text("d", text, local, chunk_tokens=100, overlap_tokens=80)
    first, second = chunks[0].text.split(), chunks[1].text.split()
    shared = [w for w in first if w in set(second)]
    assert local.count_batch([" ".join(shared)])[0] > 60
