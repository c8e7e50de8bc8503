"""The numpy all-MiniLM-L6-v2 runtime: equal to sentence-transformers (golden fixture), no torch."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lakechain.config import ConfigError, EmbeddingConfig
from lakechain.embed.embedders import LocalEmbedder, cached_embedder, check_model
from lakechain.embed.minilm import gelu_

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "minilm_golden.npz"  # scripts/make_minilm_golden.py


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    with np.load(GOLDEN) as g:
        return {k: g[k] for k in g.files}


@pytest.fixture(scope="module")
def local() -> LocalEmbedder:
    emb = cached_embedder(EmbeddingConfig())
    assert isinstance(emb, LocalEmbedder)
    return emb


def test_fixture_covers_truncation_and_odd_inputs(golden):
    texts, lengths = [str(t) for t in golden["texts"]], golden["lengths"]
    assert len(texts) >= 40 and golden["vectors"].shape == (len(texts), 384)
    assert lengths.max() == 256 and (lengths == 256).sum() >= 5  # long texts cut at max_seq_length
    assert lengths.min() == 2 and "" in texts  # [CLS] [SEP] only
    assert any(ord(c) > 0x3000 for t in texts for c in t)


def test_tokens_match_sentence_transformers(local, golden):
    ids = local.model.token_ids([str(t) for t in golden["texts"]])
    assert [len(x) for x in ids] == golden["lengths"].tolist()
    assert all(x[0] == 101 and x[-1] == 102 for x in ids)  # [CLS] … [SEP]


@pytest.mark.parametrize(("batch_size", "threads"), [(64, 1), (7, 2), (1, 1)])
def test_vectors_equal_sentence_transformers(golden, batch_size, threads):
    emb = LocalEmbedder(EmbeddingConfig(batch_size=batch_size), threads=threads)
    texts = [str(t) for t in golden["texts"]]
    v = emb.embed(texts)
    assert v.dtype == np.float32 and v.shape == golden["vectors"].shape
    assert float(np.abs(v - golden["vectors"]).max()) <= 1e-5
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-6)


def test_input_order_kept_across_length_batches(local, golden):
    texts = [str(t) for t in golden["texts"]][::-1]
    v = local.embed(texts)
    np.testing.assert_allclose(v, golden["vectors"][::-1], atol=1e-5)


def test_gelu_uses_an_exact_erf():
    x = np.linspace(-10, 10, 20001, dtype=np.float32)
    ref = np.array([0.5 * float(v) * (1 + math.erf(float(v) / math.sqrt(2))) for v in x])
    y = x.copy()
    gelu_(y, np.empty_like(y))
    assert float(np.abs(y - ref).max()) < 2e-6


def test_fresh_process_needs_no_torch():
    code = (
        "import sys\n"
        "from lakechain.config import EmbeddingConfig\n"
        "from lakechain.embed.embedders import make_embedder\n"
        "v = make_embedder(EmbeddingConfig(), threads=1).embed(['hello world'])\n"
        "heavy = sorted(m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules)\n"
        "print(v.shape, heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=dict(os.environ)
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(1, 384) []"


def test_check_model_names_the_key_and_what_is_supported():
    check_model(EmbeddingConfig())
    check_model(EmbeddingConfig(model="sentence-transformers/all-MiniLM-L6-v2", dimensions=384))
    with pytest.raises(ConfigError) as info:
        check_model(EmbeddingConfig(model="BAAI/bge-small-en-v1.5"))
    msg = str(info.value)
    assert "\n" not in msg and "embedding.model 'BAAI/bge-small-en-v1.5'" in msg and "all-MiniLM-L6-v2" in msg
    with pytest.raises(ConfigError, match="embedding.dimensions=256"):
        check_model(EmbeddingConfig(dimensions=256))
    with pytest.raises(ConfigError, match="embedding.api_key"):
        check_model(EmbeddingConfig(provider="openai", model="text-embedding-3-small"))
