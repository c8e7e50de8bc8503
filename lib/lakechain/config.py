"""Typed, validated configuration loaded from YAML plus ``--set key=value`` overrides.

Every section forbids unknown keys so a typo fails at start with the key path and the
allowed keys instead of being silently ignored. Secrets are written in YAML only by
reference (``${env:NAME}`` or ``${secret:scope/key}``) and held as ``SecretStr`` so they
never appear in a repr, a log line or a config dump.
"""

from __future__ import annotations

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

_REF = re.compile(r"^\$\{(env|secret):([^}]+)\}$")
SECRET_KEYS = frozenset({"api_key"})


class ConfigError(ValueError):
    """Raised for any configuration problem; the message names the key and the fix."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class StorageConfig(_Section):
    root: str = "./lakechain-data"
    """Local directory (or DBFS/volume path) holding every table and the index."""
    catalog: str | None = None
    """Unity Catalog catalog; with ``schema`` set, tables are ``catalog.schema.name``."""
    schema_: str | None = Field(default=None, alias="schema")
    volume: str | None = None
    """Unity Catalog volume path for the index and images (Databricks)."""
    delta: Literal["auto", "native", "local"] = "auto"
    """``native`` = Delta jars/Databricks, ``local`` = delta-rs Python data source."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_assignment=True)

    @property
    def uses_catalog(self) -> bool:
        return bool(self.catalog and self.schema_)

    @property
    def files_root(self) -> str:
        """Where non-table files (index, images) live."""
        return self.volume or self.root


class SparkConfig(_Section):
    master: str = "local[*]"
    app_name: str = "lakechain"
    shuffle_partitions: int = Field(default=8, ge=1)
    arrow_batch_size: int = Field(default=1000, ge=1)
    log_level: str = "WARN"
    conf: dict[str, str] = Field(default_factory=dict)


class CorpusConfig(_Section):
    path: str = "./data/corpus"
    """A directory of .txt/.md/.html/.jsonl files, or a table name."""
    max_document_bytes: int = Field(default=32_000_000, ge=1)
    """Larger documents become ingest_errors rows; smaller ones (a 10 MB book too) are chunked."""
    partitions: int | None = Field(default=None, ge=1)


class ChunkingConfig(_Section):
    chunk_tokens: int = Field(default=200, ge=16)
    overlap_tokens: int = Field(default=32, ge=0)


Provider = Literal["local", "openai", "azure_openai", "openai_compatible"]


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
            raise ConfigError(f"{keys}: required for provider '{self.provider}'")


class EmbeddingConfig(EndpointConfig):
    model: str = "all-MiniLM-L6-v2"
    batch_size: int = Field(default=64, ge=1)
    dimensions: int | None = Field(default=None, ge=1)


class ChatConfig(EndpointConfig):
    model: str = "lakechain-extractive"
    temperature: float = Field(default=0.0, ge=0, le=2)
    max_tokens: int = Field(default=512, ge=1)
    structured_output: bool = False


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
    commit_every: int | None = Field(default=None, ge=1)
    """Tasks per MERGE into ``results`` (one Spark job each): a killed run loses at most the
    uncommitted batches. Default: max(256, partitions × max_concurrency × 64)."""


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
    """Read a Databricks secret through dbutils (only present on a cluster)."""
    try:
        from pyspark.dbutils import DBUtils  # type: ignore[import-not-found]
        from pyspark.sql import SparkSession
    except ImportError as exc:  # pragma: no cover - Databricks only
        raise ConfigError(
            f"${{secret:{scope}/{key}}}: Databricks secrets need a Databricks runtime; "
            "use ${env:NAME} elsewhere"
        ) from exc
    # Settings load before Lakechain builds a session; a job's Python file may have none
    # active yet, and on a cluster getOrCreate returns the runtime's own session.
    spark = SparkSession.getActiveSession() or SparkSession.builder.getOrCreate()  # pragma: no cover
    return DBUtils(spark).secrets.get(scope=scope, key=key)  # pragma: no cover


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
    """One line per problem. Inputs that came from a reference are never echoed (a secret
    put under the wrong key would otherwise land in the error message and the job log)."""
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        key = ".".join(str(p) for p in loc)
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(Settings, loc)
            lines.append(f"{key}: unknown key; allowed: {', '.join(allowed)}")
        else:
            shown = repr(err.get("input"))
            refs = [ref for value, ref in (hidden or {}).items() if value in shown]
            if "api_key" in key:
                shown = "<secret>"
            elif refs:
                shown = f"<hidden: the value of {', '.join(sorted(refs))}>"
            lines.append(f"{key}: {err['msg']} (got {shown})")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def settings_from_dict(
    data: Mapping[str, Any],
    overrides: Iterable[str] = (),
    secret_getter: SecretGetter = databricks_secret,
) -> Settings:
    raw = apply_overrides(_deep_copy(dict(data)), overrides)
    _reject_literal_secrets(raw, "")
    resolved = _resolve_refs(raw, "", secret_getter)
    refs = _ref_values(raw, resolved)
    try:
        settings = Settings.model_validate(resolved)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, refs)) from None
    settings._refs = refs
    return settings


def load_settings(
    path: str | os.PathLike[str] | None = None,
    overrides: Iterable[str] = (),
    secret_getter: SecretGetter = databricks_secret,
) -> Settings:
    """Load ``path`` (YAML) and apply overrides. ``None`` means built-in defaults."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p} (pass --config conf/local.yaml)")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML: {exc}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: top level must be a mapping of sections")
        data = loaded
    return settings_from_dict(data, overrides, secret_getter)


def _deep_copy(d: dict[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in d.items()}
