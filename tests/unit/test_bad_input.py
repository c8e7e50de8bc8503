"""Bad input given to the CLI: each kind is refused at start as ONE ``lakechain: ...`` line
naming the key or path and the fix, exit 2, before Spark starts and before anything is written.

``main`` runs in-process with the session factory replaced by a failure, so "before Spark"
is a fact, and each test checks the storage root is still empty afterwards. The inventory of
every bad-input kind and its test is docs/bad-input.md.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from lakechain import cli
from lakechain.embed import corpus
from lakechain.embed.ingest import Document, IngestError, parse_jsonl_line
from lakechain.errors import ConfigError, is_user_error
from lakechain.tasks.parse import parse_files, parse_lines

REPO = Path(__file__).resolve().parents[2]
CONF = str(REPO / "conf" / "local.yaml")


@pytest.fixture
def refused(monkeypatch, capsys, tmp_path) -> Callable[..., str]:
    """Run ``lakechain <command> --config conf/local.yaml --set storage.root=<tmp>/lake
    <extra>`` in-process; assert exit 2, no Spark, an empty root and ONE line on stderr,
    and return that line with ``{root}`` / ``{tmp}`` replaced back for exact comparisons."""

    def no_spark(settings, ctx):
        raise AssertionError("Spark started: the bad input was not caught at start")

    monkeypatch.setattr(cli, "_session", no_spark)
    root = tmp_path / "lake"

    def run(command: str, *extra: str, config: str | None = CONF) -> str:
        argv = [command, *(["--config", config] if config else []), "--set", f"storage.root={root}", *extra]
        assert cli.main(argv) == 2
        out, err = capsys.readouterr()
        assert out == "" and "Traceback" not in err, err
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("lakechain: "), err
        assert not root.exists() or not any(root.iterdir()), "something was written"
        return lines[0].replace(str(root), "{root}").replace(str(tmp_path), "{tmp}")

    return run


# --- configuration keys and values ----------------------------------------------------


def test_unknown_key_suggests_the_closest_one(refused):
    assert refused("embed", "--set", "storage.rot=/x") == (
        "lakechain: invalid configuration: storage.rot: unknown key; allowed: catalog, lock_timeout_s, "
        "root, schema, volume; did you mean storage.root?"
    )


def test_several_problems_are_one_line_naming_every_key(refused):
    line = refused("embed", "--set", "retrieval.k=0", "--set", "tasks.max_concurrency=many")
    assert line == (
        "lakechain: invalid configuration (2 problems): retrieval.k: Input should be greater than or "
        "equal to 1 (got '0'); tasks.max_concurrency: Input should be a valid integer, unable to parse "
        "string as an integer (got 'many')"
    )


def test_a_word_where_a_boolean_belongs(refused):
    assert refused("embed", "--set", "retrieval.mmr=maybe") == (
        "lakechain: invalid configuration: retrieval.mmr: Input should be a valid boolean, unable to "
        "interpret input (got 'maybe')"
    )


@pytest.mark.parametrize(
    "key",
    [
        "retrieval.k",
        "embedding.batch_size",
        "embedding.commit_every",
        "tasks.commit_every",
        "tasks.max_concurrency",
        "tasks.requests_per_minute",
        "index.nprobe",
    ],
)
def test_zero_or_negative_counts_are_refused(refused, key):
    for value in ("0", "-3"):
        assert refused("pipeline", "--set", f"{key}={value}") == (
            f"lakechain: invalid configuration: {key}: Input should be greater than or equal to 1 "
            f"(got '{value}')"
        )


def test_a_share_above_one_is_refused(refused):
    assert refused("run-tasks", "--set", "tasks.max_error_fraction=1.5") == (
        "lakechain: invalid configuration: tasks.max_error_fraction: Input should be less than or equal "
        "to 1 (got '1.5')"
    )


def test_unknown_provider_lists_the_providers(refused):
    assert refused("ask", "--set", "chat.provider=gemini", "Q?") == (
        "lakechain: invalid configuration: chat.provider: Input should be 'local', 'openai', "
        "'azure_openai', 'openai_compatible' or 'llamacpp' (got 'gemini')"
    )


def test_endpoint_url_without_a_scheme(refused):
    assert refused("embed", "--set", "embedding.base_url=localhost:8000/v1") == (
        "lakechain: invalid configuration: embedding.base_url: must be an http:// or https:// URL, "
        "e.g. http://localhost:8000/v1 (got 'localhost:8000/v1')"
    )


def test_openai_without_a_key_names_the_variable_to_export(refused, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert refused("run-tasks", "--set", "chat.provider=openai", "--set", "chat.model=gpt-4o-mini") == (
        "lakechain: chat.api_key: required for provider 'openai' (chat.api_key defaults to "
        "${env:OPENAI_API_KEY}, which is not set: export OPENAI_API_KEY=...)"
    )


def test_azure_without_its_endpoint_settings_names_each_key(refused, monkeypatch):
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "k-test")
    assert refused("embed", "--set", "embedding.provider=azure_openai") == (
        "lakechain: embedding.base_url, embedding.api_version, embedding.deployment: required for "
        "provider 'azure_openai'"
    )


def test_a_key_in_clear_is_refused_and_never_echoed(refused):
    line = refused("ask", "--set", "chat.api_key=sk-live-0123456789", "Q?")
    assert line == (
        "lakechain: chat.api_key: write secrets by reference, e.g. ${env:OPENAI_API_KEY} or "
        "${secret:scope/key}, never the key itself"
    )


def test_a_reference_to_an_unset_variable(refused, monkeypatch):
    monkeypatch.delenv("LC_BAD_INPUT_UNSET", raising=False)
    assert refused("embed", "--set", "spark.conf.fs.key=${env:LC_BAD_INPUT_UNSET}") == (
        "lakechain: spark.conf.fs.key: environment variable LC_BAD_INPUT_UNSET is not set "
        "(export LC_BAD_INPUT_UNSET=...)"
    )


def test_a_schema_name_spark_cannot_use(refused):
    line = refused("sql", "--set", "storage.schema=my-schema", "SELECT 1")
    assert line == (
        "lakechain: invalid configuration: storage.schema: use letters, digits and underscores, "
        "not starting with a digit (e.g. lakechain_dev) (got 'my-schema')"
    )
    assert line.endswith("(got 'my-schema')")


def test_hybrid_retrieval_with_both_weights_zero(refused):
    line = refused("ask", "--set", "retrieval.dense_weight=0", "--set", "retrieval.keyword_weight=0", "Q?")
    assert "retrieval.dense_weight and retrieval.keyword_weight are both 0: give one a positive" in line


# --- the config file and --set syntax -------------------------------------------------


def test_config_file_not_found(refused, tmp_path):
    assert refused("embed", config=str(tmp_path / "nope.yaml")) == (
        "lakechain: config file not found: {tmp}/nope.yaml (pass --config conf/local.yaml)"
    )


def test_config_file_that_is_not_yaml_names_line_and_column(refused, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("storage:\n  root: x\n schema: y\n")  # the classic indentation slip
    assert refused("embed", config=str(bad)) == (
        "lakechain: {tmp}/bad.yaml: not valid YAML at line 3, column 2: expected <block end>, "
        "but found '<block mapping start>'"
    )


def test_config_file_holding_a_list(refused, tmp_path):
    bad = tmp_path / "list.yaml"
    bad.write_text("- storage\n- corpus\n")
    assert refused("embed", config=str(bad)) == (
        "lakechain: {tmp}/list.yaml: top level must be a mapping of sections (storage:, corpus:, ...), "
        "got a list"
    )


def test_a_value_where_a_section_belongs(refused, tmp_path):
    bad = tmp_path / "flat.yaml"
    bad.write_text("chunking: 200\n")
    assert refused("embed", config=str(bad)) == (
        "lakechain: invalid configuration: chunking: must be a section of keys (chunk_tokens, "
        "overlap_tokens), got int"
    )


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("storage.root", "--set 'storage.root': expected section.key=value"),
        ("root=/x", "--set 'root=/x': expected section.key=value (e.g. storage.root=/tmp/out)"),
        ("corpus.path.x=1", "--set 'corpus.path.x=1': path is not a section"),
    ],
    ids=["no-equals", "no-section", "into-a-value"],
)
def test_malformed_set(refused, item, message):
    assert refused("embed", "--set", item) == f"lakechain: {message}"


# --- input paths, checked before Spark --------------------------------------------------


def test_missing_corpus_folder(refused, tmp_path):
    assert refused("embed", "--set", f"corpus.path={tmp_path / 'docs'}") == (
        "lakechain: corpus.path {tmp}/docs: no such file or directory; point corpus.path at a "
        "folder of .txt/.md/.html/.jsonl files, or give a table name"
    )


def test_corpus_path_naming_one_file(refused, tmp_path):
    (tmp_path / "notes.txt").write_text("one document")
    assert refused("embed", "--set", f"corpus.path={tmp_path / 'notes.txt'}") == (
        "lakechain: corpus.path {tmp}/notes.txt is a file: point corpus.path at the folder holding it "
        "(a corpus is a folder of .txt/.md/.html/.jsonl files, or a table)"
    )


def test_missing_tasks_file_fails_the_pipeline_before_it_embeds(refused, tmp_path):
    assert refused("pipeline", "--set", f"tasks.path={tmp_path / 'tasks.jsonl'}") == (
        "lakechain: tasks.path {tmp}/tasks.jsonl: no such file or directory; point tasks.path at a "
        ".jsonl file or a folder of them, or give a table name"
    )


def test_bare_input_names_are_tables_left_to_the_stage(tmp_path):
    """``corpus.path=docs`` names a table: the start check must not refuse it as a path."""
    settings = cli.load_settings(CONF, [f"storage.root={tmp_path}", "corpus.path=docs", "tasks.path=main.q"])
    cli.check_inputs(settings, "pipeline")


# --- lines that no hash, Arrow batch or table can hold -----------------------------------


def test_tasks_line_with_bytes_that_are_not_utf8_is_an_error_task(tmp_path):
    f = tmp_path / "tasks.jsonl"
    f.write_bytes(b'{"question": "fine"}\n{"question": "caf\xe9"}\n{"image_prompt": "a lake"}\n')
    with f.open(encoding="utf-8", errors="surrogateescape") as fh:  # as tasks/input.py reads
        tasks = parse_files([("tasks.jsonl", fh)], 100)
    assert [t.parse_error for t in tasks] == [
        None,
        "tasks.jsonl line 2: not valid UTF-8 (byte 0xe9 at column 18); save the file as UTF-8",
        None,
    ]
    assert tasks[1].raw == '{"question": "caf\\udce9"}'
    json.dumps([t.as_dict() for t in tasks]).encode("utf-8")  # every row is storable


def test_tasks_line_with_a_lone_surrogate_escape_is_an_error_task():
    (task,) = parse_lines(['{"task_id": "s1", "question": "a\\ud800b"}'], 100)
    assert task.parse_error == ("line 1: a lone surrogate escape \\ud800 is not valid Unicode; fix the text")
    task.raw.encode("utf-8")


def test_corpus_jsonl_line_with_a_lone_surrogate_escape_is_an_error_row():
    bad = parse_jsonl_line(b'{"id": "d1", "text": "x\\udfffy"}\n', "docs.jsonl", 4, 1000)
    assert bad == IngestError(
        "docs.jsonl:4", None, "line 4: a lone surrogate escape \\udfff is not valid Unicode; fix the text"
    )
    assert isinstance(parse_jsonl_line(b'{"id": "d2", "text": "ok"}\n', "docs.jsonl", 5, 1000), Document)


def test_corpus_table_without_text_column_is_a_user_error():
    class Frame:  # what _read_table reads before any Spark call
        columns = ["id", "body"]

    with pytest.raises(ConfigError) as err:
        corpus._read_table(Frame(), "main.docs", 1000)  # type: ignore[arg-type]
    assert str(err.value) == (
        "corpus.path 'main.docs': the table needs columns doc_id (or id) and text, and has body, id; "
        "rename its columns or select them into a view"
    )
    assert is_user_error(err.value)


# --- `lakechain ask` against an index on disk (no Spark) ---------------------------------

SEED = [
    "Azure Databricks is a fast, easy, and collaborative Apache Spark-based analytics platform.",
    "LangChain is a framework designed to simplify the creation of applications using language models.",
]


@pytest.fixture
def indexed(tmp_path) -> Iterator[tuple[Path, Path]]:
    """(storage root, build directory): a 2-chunk index of the local model built from chunks
    v1, beside a ``chunks`` Delta log at v1 (what ``ask`` reads to tell a stale index)."""
    from lakechain.config import EmbeddingConfig
    from lakechain.embed.embedders import cached_embedder
    from lakechain.index import build, clear_cache, index_root, store

    embedder = cached_embedder(EmbeddingConfig())
    ids = np.array([10, 11], dtype=np.int64)
    index = build.make_empty(build.IndexPlan("flat", embedder.dim))
    build.add(index, embedder.embed(SEED), ids)
    rows = pa.table(
        {
            "vector_id": ids,
            "chunk_id": ["k0", "k1"],
            "doc_id": ["dbx.md", "lc.md"],
            "chunk_index": [0, 0],
            "text": SEED,
        }
    )
    root = tmp_path / "lake"
    log = root / "chunks" / "_delta_log"
    log.mkdir(parents=True)
    for v in (0, 1):
        (log / f"{v:020d}.json").write_text("{}")
    source = {"table": "chunks", "path": str(root / "chunks"), "version": 1}
    manifest = {
        "model": embedder.name,
        "dim": embedder.dim,
        "count": 2,
        "nprobe": 1,
        "description": "IDMap2,Flat",
    }
    built = Path(store.save_build(index_root(root), index, rows, {**manifest, "source": source}))
    clear_cache()
    yield root, built
    clear_cache()


def ask(capsys, root: Path, question: str, *extra: str) -> tuple[int, str, str]:
    rc = cli.main(["ask", "--config", CONF, "--set", f"storage.root={root}", *extra, question])
    out, err = capsys.readouterr()
    return rc, out, err


def one_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("lakechain: "), err
    return lines[0]


def test_ask_answers_from_the_fixture_index(indexed, capsys):
    """The fixture's index works, so the refusals below are about the bad input alone."""
    rc, out, err = ask(capsys, indexed[0], "What is Azure Databricks?")
    assert (rc, err) == (0, "") and out.startswith(SEED[0])


def test_ask_with_an_empty_question(indexed, capsys):
    rc, out, err = ask(capsys, indexed[0], "   ")
    assert (rc, out) == (2, "")
    assert (
        one_line(err) == 'lakechain: the question is empty: ask one, e.g. lakechain ask "What is Delta Lake?"'
    )


def test_ask_with_an_index_of_another_embedding_model(indexed, capsys):
    root, built = indexed
    manifest = json.loads((built / "manifest.json").read_text())
    (built / "manifest.json").write_text(json.dumps({**manifest, "model": "text-embedding-3-small"}))
    rc, out, err = ask(capsys, root, "What is Azure Databricks?")
    assert (rc, out) == (2, "")
    line = one_line(err)
    assert "model 'text-embedding-3-small' but the configured model is 'all-MiniLM-L6-v2'" in line
    assert "lakechain index --force" in line


def test_ask_with_a_corrupt_manifest(indexed, capsys):
    root, built = indexed
    (built / "manifest.json").write_text('{"model": "all-MiniLM')
    rc, out, err = ask(capsys, root, "What is Azure Databricks?")
    assert (rc, out) == (2, "")
    line = one_line(err)
    assert line.startswith(f"lakechain: {built / 'manifest.json'} is not valid JSON (")
    assert "lakechain index --force" in line


def test_ask_with_the_index_file_deleted(indexed, capsys):
    root, built = indexed
    (built / "index.faiss").unlink()
    rc, out, err = ask(capsys, root, "What is Azure Databricks?")
    assert (rc, out) == (2, "")
    assert "index.faiss is missing" in one_line(err)


def test_ask_warns_when_chunks_moved_on_since_the_index(indexed, capsys):
    root, _ = indexed
    (root / "chunks" / "_delta_log" / f"{2:020d}.json").write_text("{}")
    rc, out, err = ask(capsys, root, "What is Azure Databricks?")
    assert rc == 0 and out.startswith(SEED[0])
    assert one_line(err) == (
        "lakechain: warning: the index was built from chunks v1, which is now at v2: answers miss what "
        "changed since; run `lakechain index`"
    )


# --- the inventory ----------------------------------------------------------------------


def test_the_inventory_counts_its_rows_and_names_only_tests_that_exist():
    """docs/bad-input.md is pasted into release notes: its count and test names must hold."""
    import re

    text = (REPO / "docs" / "bad-input.md").read_text()
    rows = re.findall(r"^\| (\d+) \| .* \| ([^|]+) \|$", text, re.M)
    assert [int(n) for n, _ in rows] == list(range(1, len(rows) + 1))
    assert f"**{len(rows)} kinds** are tested" in text and len(rows) >= 40
    for n, cell in rows:
        refs = re.findall(r"((?:unit|spark)/\w+\.py)?::(test_\w+)", cell)
        assert refs or cell.strip() == "same", f"row {n} names no test"
    named = re.findall(r"((?:unit|spark)/\w+\.py)?::(test_\w+)", text)
    current = ""
    for path, name in named:
        current = path or current
        source = (REPO / "tests" / current).read_text()
        assert re.search(rf"^def {name}\(", source, re.M), f"{current}::{name} does not exist"
