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
    ("fingerprint", "string"),
    ("chat_fp", "string"),
    ("image_fp", "string"),
    ("prompt_fp", "string"),
    ("retrieval_fp", "string"),
    ("cost_usd", "double"),
    ("run_id", "string"),
    ("created_at", "timestamp"),
    ("cache_key", "string"),
    ("cache_hit", "boolean"),
    ("calls_saved", "int"),
]
"""``fingerprint`` and the ``*_fp`` parts: what determined the row (``tasks.provenance``);
``cost_usd``: its model calls at ``prices`` (null when a model it used has no price).
``cache_key``: the response-cache key of the task's QA answer call (null: not cached);
``cache_hit``: that answer came from ``llm_cache`` or from an identical call of this run;
``calls_saved``: model calls the task did not make thanks to the cache."""

LLM_REPLY_TYPE = (
    "struct<response:string,finish_reason:string,model:string,prompt_tokens:bigint,completion_tokens:bigint>"
)
"""A chat reply as the response cache keeps it (``tasks.llm_cache.Reply``)."""
EXECUTED_COLUMNS: Columns = [*RESULT_COLUMNS, ("llm_reply", LLM_REPLY_TYPE)]
"""What the executors return: the results row, and the reply of a call they made (for ``llm_cache``)."""

PREPARED_COLUMNS: Columns = [
    *[c for c in TASK_COLUMNS if c[0] in EXECUTOR_COLUMNS],
    ("docs", "string"),
    ("retrieval_error", "string"),
    ("cache_key", "string"),
]
"""A pending task after its partition's retrieval (not a table): passages as JSON and the
cache key of its answer call; joined with ``llm_cache`` before the model is called."""

RESULTS_STAGING = "results_staging"
STAGING_COLUMNS: Columns = [*EXECUTED_COLUMNS, ("batch", "int")]
"""Each commit batch's rows, written once by the executors, then MERGEd into ``results``
(and their new replies into ``llm_cache``). Rows left by a killed run are merged by the
next run before it plans (nothing is redone)."""

LLM_CACHE = "llm_cache"
LLM_CACHE_COLUMNS: Columns = [
    ("cache_key", "string"),
    ("provider", "string"),
    ("model", "string"),
    ("response", "string"),
    ("finish_reason", "string"),
    ("response_model", "string"),
    ("prompt_tokens", "bigint"),
    ("completion_tokens", "bigint"),
    ("run_id", "string"),
    ("created_at", "timestamp"),
]
"""The response cache: one successful chat reply per key (``tasks.llm_cache.cache_key``);
errors are never stored."""

RUNS = "runs"
RUN_COLUMNS: Columns = [
    ("run_id", "string"),
    ("command", "string"),
    ("source", "string"),
    ("started_at", "timestamp"),
    ("finished_at", "timestamp"),
    ("wall_s", "double"),
    ("tasks_total", "bigint"),
    ("pending", "bigint"),
    ("ok", "bigint"),
    ("error", "bigint"),
    ("skipped", "bigint"),
    ("stage_seconds", "map<string,double>"),
    ("report", "string"),
]
"""One row per ``run-tasks`` / ``pipeline`` run, appended when it ends: the figures the
results rows cannot give (tasks skipped, seconds per stage) for ``lakechain report``;
``report`` is the run's whole ``RunReport`` as JSON."""

RUN_ESTIMATES = "run_estimates"
RUN_ESTIMATE_COLUMNS: Columns = [
    ("run_id", "string"),
    ("created_at", "timestamp"),
    ("model", "string"),
    ("pending", "bigint"),
    ("pilot_tasks", "bigint"),
    ("remaining", "bigint"),
    ("prompt_tokens", "bigint"),
    ("completion_tokens", "bigint"),
    ("completion_tokens_low", "bigint"),
    ("completion_tokens_high", "bigint"),
    ("image_calls", "bigint"),
    ("cost_usd", "double"),
    ("cost_usd_low", "double"),
    ("cost_usd_high", "double"),
    ("wall_s", "double"),
    ("wall_s_low", "double"),
    ("wall_s_high", "double"),
    ("bound_by", "string"),
]
"""One row per ``run-tasks --estimate``: the projection for the tasks left after its pilot
(prompt tokens exact; completion, cost and wall time with a low–high range)."""

TASKS_DDL = ddl(TASK_COLUMNS)
RESULTS_DDL = ddl(RESULT_COLUMNS)
EXECUTED_DDL = ddl(EXECUTED_COLUMNS)
PREPARED_DDL = ddl(PREPARED_COLUMNS)
LLM_CACHE_DDL = ddl(LLM_CACHE_COLUMNS)
EXECUTOR_DDL = ddl([c for c in TASK_COLUMNS if c[0] in EXECUTOR_COLUMNS])
CHUNKS_DDL = ddl(CHUNK_COLUMNS)
ERRORS_DDL = ddl(ERROR_COLUMNS)
RUNS_DDL = ddl(RUN_COLUMNS)

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

# --- eval -----------------------------------------------------------------------------------

EVAL_RESULTS = "eval_results"
EVAL_COLUMNS: Columns = [
    ("run_id", "string"),
    ("created_at", "timestamp"),
    ("mode", "string"),
    ("config", "string"),
    ("index_build", "string"),
    ("question_id", "string"),
    ("question", "string"),
    ("expected_docs", "array<string>"),
    ("key_phrase", "string"),
    ("retrieved_docs", "array<string>"),
    ("rank", "int"),
    ("hit_at_1", "boolean"),
    ("hit_at_5", "boolean"),
    ("reciprocal_rank", "double"),
    ("answer", "string"),
    ("not_in_context", "boolean"),
    ("cited_docs", "array<string>"),
    ("key_phrase_found", "boolean"),
    ("citation_precision", "double"),
    ("error", "string"),
]
EVAL_DDL = ddl(EVAL_COLUMNS)

TABLES: dict[str, Columns] = {
    DOCUMENTS: DOCUMENT_COLUMNS,
    CHUNKS: CHUNK_COLUMNS,
    INGEST_ERRORS: ERROR_COLUMNS,
    TASKS: TASK_COLUMNS,
    RESULTS: RESULT_COLUMNS,
    RESULTS_STAGING: STAGING_COLUMNS,
    EMBED_STAGING: EMBEDDED_COLUMNS,
    EVAL_RESULTS: EVAL_COLUMNS,
    LLM_CACHE: LLM_CACHE_COLUMNS,
    RUNS: RUN_COLUMNS,
    RUN_ESTIMATES: RUN_ESTIMATE_COLUMNS,
    EMBED_STATE: EMBED_STATE_COLUMNS,
}
"""Every table Lakechain writes."""
