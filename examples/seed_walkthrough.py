"""The seed tutorial, replayed in one process with Lakechain's chains.

    python examples/seed_walkthrough.py out/                      # offline (conf/local.yaml)
    python examples/seed_walkthrough.py out/ --config conf/openai.yaml
    python examples/seed_walkthrough.py out/ --set images.size=256x256

Steps: embed the tutorial's three texts, index them in memory (FAISS), ask "What is Azure
Databricks?", generate "A futuristic city with flying cars", run the multi-task input
(QA + image together), and an illustrated answer. PNGs and ``summary.json`` go to the
output directory; answers are printed with their sources.

Offline, the answers are *extractive* (the local model quotes the best-supported context
sentence with its citation) and images come from the deterministic local renderer.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO / "conf" / "local.yaml"

SEED_TEXTS = [
    "Azure Databricks is a fast, easy, and collaborative Apache Spark-based analytics platform.",
    "LangChain is a framework designed to simplify the creation of applications using large language models.",
    "GPT-4 is a powerful language model developed by OpenAI.",
]
QUESTION = "What is Azure Databricks?"
IMAGE_PROMPT = "A futuristic city with flying cars"
MULTI_TASK = {
    "qa": {"question": "Tell me about LangChain."},
    "image_generation": {"prompt": "A conceptual diagram of LangChain in use"},
}


def slug(text: str, limit: int = 48) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit] or "image"


def save_png(out_dir: Path, name: str, image: dict[str, Any]) -> str:
    path = out_dir / f"{slug(name)}.png"
    path.write_bytes(image["png"])
    return str(path)


def describe_answer(result: dict[str, Any]) -> str:
    lines = [f"Q: {result['question']}", f"A: {result['answer']}"]
    for s in result["sources"]:
        mark = "*" if s["cited"] else " "
        lines.append(
            f"  {mark}[{s['ref']}] {s['chunk_id']} (doc {s['doc_id']}, score {s['score']:.3f}): "
            f"{s['snippet']}"
        )
    u = result["usage"]
    lines.append(
        f"  model {result['model']}, tokens {u['prompt_tokens']}+{u['completion_tokens']}={u['total_tokens']}"
    )
    return "\n".join(lines)


def image_summary(image: dict[str, Any], path: str) -> dict[str, Any]:
    keep = ("prompt", "prompt_used", "revised_prompt", "width", "height", "model", "usage")
    return {**{k: image.get(k) for k in keep}, "path": path}


def run(settings: Any, out_dir: Path, log: Any = print) -> dict[str, Any]:
    """Replay the tutorial; returns a JSON-able summary (also written to summary.json)."""
    from lakechain.chains import InMemorySearcher, build_chains
    from lakechain.embed.embedders import cached_embedder

    out_dir.mkdir(parents=True, exist_ok=True)
    embedder = cached_embedder(settings.embedding)
    searcher = InMemorySearcher.from_texts(
        embedder,
        SEED_TEXTS,
        chunk_ids=[f"seed-{i}" for i in range(3)],
        doc_ids=[f"seed-doc-{i}" for i in range(3)],
    )
    chains = build_chains(settings, searcher, embedder=embedder)
    log(f"Indexed {len(SEED_TEXTS)} texts with {embedder.name} ({embedder.dim} dims) in memory.\n")

    qa = chains.qa.invoke(QUESTION)
    log(describe_answer(qa) + "\n")

    image = chains.image.invoke(IMAGE_PROMPT)
    image_path = save_png(out_dir, IMAGE_PROMPT, image)
    log(f"Image: {image_path} ({image['width']}x{image['height']}, {image['model']})\n")

    multi = chains.router.invoke(MULTI_TASK)
    log("Multi-task:\n" + describe_answer(multi["qa"]))
    multi_path = save_png(out_dir, MULTI_TASK["image_generation"]["prompt"], multi["image_generation"])
    log(f"  image: {multi_path}\n")

    illustrated = chains.illustrated.invoke(QUESTION)
    log("Illustrated answer:\n" + describe_answer(illustrated))
    illustrated_path = None
    if illustrated["image"] is not None:
        illustrated_path = save_png(out_dir, "illustrated " + QUESTION, illustrated["image"])
        log(f"  image prompt: {illustrated['image_prompt']}\n  image: {illustrated_path}")

    def strip(result: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in result.items() if k != "image"}

    summary = {
        "qa": qa,
        "image": image_summary(image, image_path),
        "multi_task": {
            "qa": multi["qa"],
            "image_generation": image_summary(multi["image_generation"], multi_path),
        },
        "illustrated": {
            **strip(illustrated),
            "image": image_summary(illustrated["image"], illustrated_path) if illustrated_path else None,
        },
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "out_dir", nargs="?", default="walkthrough-out", help="where PNGs and summary.json go"
    )
    parser.add_argument(
        "--config", default=str(DEFAULT_CONFIG), help="YAML settings (default conf/local.yaml)"
    )
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    from lakechain.config import ConfigError, load_settings

    try:
        settings = load_settings(args.config, args.overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from lakechain.chains.errors import ChainError

    try:
        run(settings, Path(args.out_dir))
    except ChainError as exc:  # a provider failed after its retries: say which and why
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
