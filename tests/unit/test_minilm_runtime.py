"""The ONNX Runtime all-MiniLM-L6-v2: equal to sentence-transformers (golden fixture), its graph
cache, the int8 mode kept apart from fp32, no torch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lakechain.config import ConfigError, EmbeddingConfig, load_settings
from lakechain.embed import minilm
from lakechain.embed.embedders import LocalEmbedder, cached_embedder, check_model, model_name
from lakechain.embed.incremental import settings_fingerprint

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "data" / "minilm_golden.npz"  # scripts/make_minilm_golden.py


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    with np.load(GOLDEN) as g:
        return {k: g[k] for k in g.files}


@pytest.fixture(scope="module")
def texts(golden) -> list[str]:
    return [str(t) for t in golden["texts"]]


@pytest.fixture(scope="module")
def local() -> LocalEmbedder:
    emb = cached_embedder(EmbeddingConfig())
    assert isinstance(emb, LocalEmbedder)
    return emb


@pytest.fixture(scope="module")
def int8() -> LocalEmbedder:
    return LocalEmbedder(EmbeddingConfig(quantize="int8"), threads=2)


def test_fixture_covers_truncation_and_odd_inputs(golden, texts):
    lengths = golden["lengths"]
    assert len(texts) >= 40 and golden["vectors"].shape == (len(texts), 384)
    assert lengths.max() == 256 and (lengths == 256).sum() >= 5  # long texts cut at max_seq_length
    assert lengths.min() == 2 and "" in texts  # [CLS] [SEP] only
    assert any(ord(c) > 0x3000 for t in texts for c in t)


def test_tokens_match_sentence_transformers(local, golden, texts):
    ids = local.model.token_ids(texts)
    assert [len(x) for x in ids] == golden["lengths"].tolist()
    assert all(x[0] == 101 and x[-1] == 102 for x in ids)  # [CLS] … [SEP]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_vectors_equal_sentence_transformers(golden, texts, batch_size, threads):
    emb = LocalEmbedder(EmbeddingConfig(batch_size=batch_size), threads=threads)
    assert emb.model.session.get_session_options().intra_op_num_threads == threads
    v = emb.embed(texts)
    assert v.dtype == np.float32 and v.shape == golden["vectors"].shape
    assert float(np.abs(v - golden["vectors"]).max()) <= 1e-5
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-6)


def test_input_order_kept_across_length_batches(local, golden, texts):
    v = local.embed(texts[::-1])
    np.testing.assert_allclose(v, golden["vectors"][::-1], atol=1e-5)


def test_runs_are_capped_by_rows_and_padded_tokens(monkeypatch, texts):
    emb = LocalEmbedder(EmbeddingConfig(batch_size=7), threads=1)
    shapes: list[tuple[int, int]] = []
    forward = emb.model._forward

    def spy(seqs):
        shapes.append((len(seqs), max(len(s) for s in seqs)))
        return forward(seqs)

    monkeypatch.setattr(emb.model, "_forward", spy)
    emb.embed(texts)
    assert sum(n for n, _ in shapes) == len(texts)
    assert all(n <= 7 and (n == 1 or n * width <= minilm.TOKENS_PER_RUN) for n, width in shapes)
    assert any(n == 7 for n, _ in shapes)  # short texts fill a run up to batch_size


def test_empty_text_and_empty_input(local, golden, texts):
    v = local.embed([""])
    np.testing.assert_allclose(v[0], golden["vectors"][texts.index("")], atol=1e-5)
    assert local.embed([]).shape == (0, 384)


def test_graph_cache_is_reused_and_rebuilt_when_missing_or_corrupt(tmp_path, monkeypatch, golden, texts):
    older = tmp_path / "all-minilm-l6-v2-fp32-0123456789abcdef01234567.onnx"  # another version's
    older.write_bytes(b"old graph")
    first = minilm.MiniLM(cache=tmp_path)
    path = first.graph_path
    assert path is not None and path.parent == tmp_path and path.is_file()
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file, no older graph left

    def no_build(*args, **kwargs):
        raise AssertionError("the cached graph should have been used")

    with monkeypatch.context() as m:  # reused: nothing is built
        m.setattr(minilm, "write_graph", no_build)
        assert minilm.MiniLM(cache=tmp_path).graph_path == path

    path.unlink()
    assert minilm.MiniLM(cache=tmp_path).graph_path == path and path.stat().st_size > 80_000_000

    path.write_bytes(b"not an onnx graph")
    rebuilt = minilm.MiniLM(cache=tmp_path)
    assert rebuilt.graph_path == path and path.stat().st_size > 80_000_000
    assert float(np.abs(rebuilt.encode(texts) - golden["vectors"]).max()) <= 1e-5


def test_an_unwritable_cache_builds_in_memory(tmp_path, golden, texts):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    m = minilm.MiniLM(cache=blocker / "cache")
    assert m.graph_path is None
    assert float(np.abs(m.encode(texts[:5]) - golden["vectors"][:5]).max()) <= 1e-5


def test_the_cache_key_follows_weights_runtime_and_mode():
    d = minilm.packaged_model_dir()
    assert minilm.graph_key(d, None) == minilm.graph_key(d, None)
    assert minilm.graph_key(d, None) != minilm.graph_key(d, "int8")
    with pytest.raises(ValueError, match="quantize='int4'"):
        minilm.MiniLM(quantize="int4")


def test_int8_is_another_model_for_chunks_and_the_fingerprint():
    fp32 = load_settings(REPO / "conf" / "local.yaml")
    q = load_settings(REPO / "conf" / "local.yaml", ["embedding.quantize=int8"])
    assert model_name(fp32.embedding) == "all-MiniLM-L6-v2"  # fp32 indexes stay valid
    assert model_name(q.embedding) == "all-MiniLM-L6-v2+int8"
    assert settings_fingerprint(q) != settings_fingerprint(fp32)
    assert settings_fingerprint(q).endswith(";model=all-MiniLM-L6-v2+int8")


def test_int8_vectors_are_unit_and_keep_their_neighbours(int8, golden, texts):
    assert int8.name == "all-MiniLM-L6-v2+int8" and int8.model.quantize == "int8"
    v, ref = int8.embed(texts), golden["vectors"]
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    cos = (v * ref).sum(axis=1)
    assert float(np.abs(v - ref).max()) > 1e-4  # really quantized: not the fp32 graph
    assert cos.min() >= 0.95  # measured 0.974

    def top5(x: np.ndarray) -> np.ndarray:
        s = x @ x.T
        np.fill_diagonal(s, -np.inf)
        return np.argsort(-s, axis=1)[:, :5]

    agree = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(top5(v), top5(ref), strict=True)])
    assert agree >= 0.8  # measured 0.875 on these (deliberately odd) texts


@pytest.mark.parametrize("value", ["int8", "INT8", None, "off", False, "none"])
def test_quantize_accepts_int8_or_off(value):
    assert EmbeddingConfig(quantize=value).quantize == ("int8" if value in ("int8", "INT8") else None)


def test_quantize_rejects_other_modes_by_key():
    with pytest.raises(
        ConfigError, match=r"embedding\.quantize: must be int8, or null/off for float32 \(got 'int4'\)"
    ):
        load_settings(REPO / "conf" / "local.yaml", ["embedding.quantize=int4"])
    with pytest.raises(ConfigError, match=r"embedding\.quantize=int8: only provider 'local'"):
        check_model(EmbeddingConfig(provider="openai", model="text-embedding-3-small", quantize="int8"))


def test_fresh_process_needs_neither_torch_nor_onnx(local):
    code = (
        "import sys\n"
        "from lakechain.config import EmbeddingConfig\n"
        "from lakechain.embed.embedders import make_embedder\n"
        "v = make_embedder(EmbeddingConfig(), threads=1).embed(['hello world'])\n"
        "heavy = ('torch', 'sentence_transformers', 'transformers', 'onnx')\n"
        "print(v.shape, sorted(m for m in heavy if m in sys.modules))\n"
    )
    assert local.model.graph_path is not None  # the graph is cached: loading it needs no onnx
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
