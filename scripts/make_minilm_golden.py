"""Regenerate tests/data/minilm_golden.npz: reference all-MiniLM-L6-v2 vectors from sentence-transformers.

    PYTHONPATH=lib .venv/bin/python scripts/make_minilm_golden.py

Needs sentence-transformers and torch, which Lakechain itself no longer installs: run it in a
venv that has them, once, when the packaged model or the golden texts change. The fixture
holds the texts, the token counts and the vectors sentence-transformers produced, so the unit
test checks the numpy runtime against them without torch.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "minilm_golden.npz"

_PARAGRAPH = (
    "Delta Lake stores a table as Parquet files plus a transaction log; every commit appends a JSON "
    "entry that names the files added and removed, so readers see a consistent snapshot. "
)

TEXTS: list[str] = [
    # empty-ish
    "",
    " ",
    "\n\t  \n",
    ".",
    "a",
    "[CLS] [SEP] [PAD] [MASK]",
    # ordinary English, short to medium
    "Azure Databricks is a fast, easy, and collaborative Apache Spark-based analytics platform.",
    "LangChain is a framework designed to simplify the creation of applications using large language models.",
    "GPT-4 is a powerful language model developed by OpenAI.",
    "Which company built GPT-4?",
    "The quick brown fox jumps over the lazy dog.",
    "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG!!!",
    "AssertionError: expected 3 rows, got 2 (see test_tables.py line 41)",
    "def l2_normalize(v):\n    return v / np.linalg.norm(v, axis=1, keepdims=True)",
    "SELECT task_id, qa_status FROM results WHERE qa_status <> 'ok' ORDER BY task_id;",
    "https://example.com/docs/path?query=1&x=y#frag user@example.org",
    "3.14159 2.71828 1.41421 6.02214076e23 -273.15 0x7fffffff",
    "Supercalifragilisticexpialidocious antidisestablishmentarianism pneumonoultramicroscopic",
    "word " * 40,
    "!!!???...,,,;;;:::---___***",
    # unicode
    "Café, naïve, coöperate, façade, jalapeño, Ångström, Straße",
    "Ça m'étonnerait que l'été soit chaud cette année à Montréal.",
    "東京は日本の首都です。北京是中国的首都。",
    "서울은 대한민국의 수도입니다.",
    "Москва — столица России; Київ — столиця України.",
    "Αθήνα είναι η πρωτεύουσα της Ελλάδας.",
    "القاهرة هي عاصمة مصر",
    "עברית נכתבת מימין לשמאל",
    "हिन्दी भारत की एक भाषा है।",
    "Emoji: 🚀🔥👍🏽 family 👨‍👩‍👧‍👦 flags 🇫🇷🇯🇵",
    "Combining: e\u0301 a\u0308 o\u0302 and zero\u200bwidth\u200djoiner\ufeffbom",
    "Math: ∑ᵢ xᵢ² ≤ ∞, ∀ε>0 ∃δ, √2 ≈ 1.414, α→β⇒γ",
    "Control\x00chars\x07and\x1bescapes\x7f",
    # long: truncated at 256 tokens by sentence-transformers
    _PARAGRAPH * 12,
    " ".join(f"token{i}" for i in range(600)),
    ("Spark executes the plan lazily. " * 30) + "This sentence is beyond the cut and must not matter.",
    "中文长文本测试。" * 120,
    # around the truncation edge
    "edge " * 253,
    "edge " * 254,
    "edge " * 255,
]


def main() -> None:
    import sentence_transformers
    import torch
    from sentence_transformers import SentenceTransformer

    from lakechain.embed.minilm import packaged_model_dir

    torch.set_num_threads(1)  # deterministic reduction order for the reference
    model = SentenceTransformer(str(packaged_model_dir()), device="cpu")
    if model.max_seq_length != 256:
        sys.exit(f"expected max_seq_length 256, got {model.max_seq_length}")
    vecs = model.encode(TEXTS, batch_size=16, convert_to_numpy=True, normalize_embeddings=True)
    features = model.tokenize(TEXTS)
    lengths = features["attention_mask"].sum(dim=1).numpy().astype(np.int32)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        OUT,
        texts=np.array(TEXTS, dtype=np.str_),
        vectors=vecs.astype(np.float32),
        lengths=lengths,
        versions=np.array(
            [f"sentence-transformers {sentence_transformers.__version__}", f"torch {torch.__version__}"]
        ),
    )
    print(f"{OUT}: {len(TEXTS)} texts, token lengths {lengths.min()}..{lengths.max()}")


if __name__ == "__main__":
    main()
