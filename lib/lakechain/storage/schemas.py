"""Every table Lakechain writes: its short name and its schema, in one place.

Why one module: the executors (rows built in pandas/Arrow), the driver (error rows), the
table layer (schema checks) and the SQL views must agree on every column name and type.
Pure: no pyspark import, so executors and unit tests read it for free.
"""

from __future__ import annotations

Columns = list[tuple[str, str]]


def ddl(columns: Columns) -> str:
    """Spark DDL for ``columns``, e.g. for ``mapInPandas`` or ``createDataFrame``."""
    return ", ".join(f"{name} {kind}" for name, kind in columns)


def names(columns: Columns) -> list[str]:
    return [name for name, _ in columns]


# --- embed stage ---------------------------------------------------------------------------

DOCUMENTS = "documents"
DOCUMENT_COLUMNS: Columns = [
    ("doc_id", "string"),
    ("source", "string"),
    ("content_hash", "string"),
    ("text", "string"),
    ("metadata", "map<string,string>"),
    ("ingested_at", "timestamp"),
    ("embed_settings", "string"),
    ("chunk_count", "int"),
]
"""``embed_settings``: what the document's chunks and vectors were made with (chunker,
tokenizer, sizes, model); ``chunk_count``: how many chunks it has (null: chunking failed).
A document whose hash and settings match and whose chunks are all in ``chunks`` is not
re-chunked. Tables written before these columns read them as null: re-chunked once."""
DOCUMENT_STATE_COLUMNS = ["embed_settings", "chunk_count"]

CHUNKS = "chunks"
CHUNK_COLUMNS: Columns = [
    ("chunk_id", "string"),
    ("doc_id", "string"),
    ("chunk_index", "int"),
    ("text", "string"),
    ("content_hash", "string"),
    ("embedding", "array<float>"),
    ("model", "string"),
    ("dim", "int"),
    ("embedded_at", "timestamp"),
    ("vector_id", "bigint"),
]

INGEST_ERRORS = "ingest_errors"
ERROR_COLUMNS: Columns = [
    ("source", "string"),
    ("doc_id", "string"),
    ("reason", "string"),
    ("stage", "string"),
    ("run_id", "string"),
    ("created_at", "timestamp"),
]

PARSED_COLUMNS: Columns = [
    ("kind", "string"),
    ("doc_id", "string"),
    ("source", "string"),
    ("content_hash", "string"),
    ("text", "string"),
    ("metadata", "map<string,string>"),
    ("reason", "string"),
    ("order_key", "string"),
]
"""Corpus rows after parsing (not a table): ``kind`` "doc" or "error" (with ``reason``)."""

EXPECTED_COLUMNS: Columns = [
    ("chunk_id", "string"),
    ("doc_id", "string"),
    ("source", "string"),
    ("chunk_index", "int"),
    ("text", "string"),
    ("content_hash", "string"),
    ("error", "string"),
]
"""Chunks a document should have (not a table); ``error`` set when chunking failed."""

EMBEDDED_COLUMNS: Columns = [*CHUNK_COLUMNS, ("source", "string"), ("error", "string")]
"""Output of the embedding UDF: chunk rows, or error rows (``error`` set)."""

EMBED_STATE = "embed_state"
EMBED_STATE_COLUMNS: Columns = [
    ("corpus", "string"),
    ("table_id", "string"),
    ("source_version", "bigint"),
    ("documents_version", "bigint"),
    ("run_id", "string"),
    ("updated_at", "timestamp"),
]
"""One row: the corpus table (name, Delta id) and version ``documents`` (at its version) was
last brought up to date from, so the next run reads only that table's change data feed."""

EMBED_STAGING = "embed_staging"
"""Each embed batch's UDF output, written once by the executors, then split into ``chunks``
and ``ingest_errors``: the model runs once per chunk however many writes read the rows.
The last batch stays until the next one overwrites it: emptying it would cost a commit per
run and free no disk before a VACUUM."""

# --- task stage ----------------------------------------------------------------------------

TASKS = "tasks"
TASK_COLUMNS: Columns = [
    ("task_id", "string"),
    ("question", "string"),
    ("image_prompt", "string"),
    ("illustrate", "boolean"),
    ("input_hash", "string"),
    ("raw", "string"),
    ("parse_error", "string"),
]

INPUT_COLUMNS = ["task_id", "question", "image_prompt", "illustrate", "input_hash"]
"""A task's input columns, copied into its result row."""
EXECUTOR_COLUMNS = [*INPUT_COLUMNS, "parse_error"]
"""Columns the executor receives for each pending task (an unparseable one becomes an error row)."""

SOURCE_TYPE = "array<struct<chunk_id:string,doc_id:string,score:double>>"

RESULTS = "results"
RESULT_COLUMNS: Columns = [
    ("task_id", "string"),
    ("question", "string"),
    ("image_prompt", "string"),
    ("illustrate", "boolean"),
    ("input_hash", "string"),
    ("answer", "string"),
    ("sources", SOURCE_TYPE),
    ("image_png", "binary"),
    ("image_prompt_used", "string"),
    ("image_path", "string"),
    ("image_width", "int"),
    ("image_height", "int"),
    ("image_bytes", "bigint"),
    ("qa_status", "string"),
    ("qa_error", "string"),
    ("image_status", "string"),
    ("image_error", "string"),
    ("status", "string"),
    ("error", "string"),
    ("grounded_share", "double"),
    ("not_grounded", "boolean"),
    ("attempts", "int"),
    ("prompt_tokens", "bigint"),
    ("completion_tokens", "bigint"),
    ("latency_ms", "bigint"),
    ("chat_model", "string"),
    ("image_model", "string"),
    ("embedding_model", "string"),
    ("index_checksum", "string"),
    ("index_table_version", "bigint"),
    ("run_id", "string"),
    ("created_at", "timestamp"),
]

RESULTS_STAGING = "results_staging"
STAGING_COLUMNS: Columns = [*RESULT_COLUMNS, ("batch", "int")]
"""Each commit batch's rows, written once by the executors, then MERGEd into ``results``.
Rows left by a killed run are merged by the next run before it plans (nothing is redone)."""

TASKS_DDL = ddl(TASK_COLUMNS)
RESULTS_DDL = ddl(RESULT_COLUMNS)
EXECUTOR_DDL = ddl([c for c in TASK_COLUMNS if c[0] in EXECUTOR_COLUMNS])
CHUNKS_DDL = ddl(CHUNK_COLUMNS)
ERRORS_DDL = ddl(ERROR_COLUMNS)

# --- SQL views over results ----------------------------------------------------------------

QA_RESULTS = "qa_results"
IMAGE_RESULTS = "image_results"

VIEWS = {
    QA_RESULTS: """
SELECT task_id, question, answer, sources, qa_status AS status, qa_error AS error,
       grounded_share, not_grounded, prompt_tokens, completion_tokens, latency_ms, attempts, chat_model,
       embedding_model,
       index_checksum, index_table_version, run_id, created_at
FROM {results} WHERE qa_status <> 'skipped'
""",
    IMAGE_RESULTS: """
SELECT task_id, question, image_prompt, illustrate, image_prompt_used, image_path, image_width,
       image_height, image_bytes, image_png, image_status AS status, image_error AS error,
       image_model, latency_ms, attempts, run_id, created_at
FROM {results} WHERE image_status <> 'skipped'
""",
}

TABLES: dict[str, Columns] = {
    DOCUMENTS: DOCUMENT_COLUMNS,
    CHUNKS: CHUNK_COLUMNS,
    INGEST_ERRORS: ERROR_COLUMNS,
    TASKS: TASK_COLUMNS,
    RESULTS: RESULT_COLUMNS,
    RESULTS_STAGING: STAGING_COLUMNS,
    EMBED_STAGING: EMBEDDED_COLUMNS,
    EMBED_STATE: EMBED_STATE_COLUMNS,
}
"""Every table the pipeline writes (``eval_results`` and others register here too)."""
