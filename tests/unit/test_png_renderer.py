"""The offline image renderer and the PNG checks every image provider goes through."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from lakechain.chains.errors import MalformedResponseError
from lakechain.chains.images import (
    LocalImageRenderer,
    decode_png_b64,
    motifs_for,
    parse_size,
    png_size,
    render_png,
)


def _open(png: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(png))
    img.load()
    return img


@pytest.mark.parametrize("size", [(512, 512), (300, 180), (64, 256)])
def test_render_is_a_valid_png_of_the_requested_size(size):
    png = render_png("A futuristic city with flying cars", *size)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    img = _open(png)
    assert img.format == "PNG"
    assert img.size == size
    assert png_size(png) == size


def test_render_is_deterministic_per_prompt():
    assert render_png("A conceptual diagram of LangChain in use", 128, 128) == render_png(
        "A conceptual diagram of LangChain in use", 128, 128
    )


def test_different_prompts_give_different_pictures():
    a = _open(render_png("A futuristic city with flying cars", 128, 128)).convert("RGB")
    b = _open(render_png("A quiet forest pond at dawn", 128, 128)).convert("RGB")
    c = _open(render_png("A futuristic city with flying cars at night", 128, 128)).convert("RGB")
    differing_ab = int((np.asarray(a) != np.asarray(b)).any(axis=2).sum())
    differing_ac = int((np.asarray(a) != np.asarray(c)).any(axis=2).sum())
    assert differing_ab > 128 * 128 // 4
    assert differing_ac > 128 * 128 // 10


def test_picture_is_not_blank_and_uses_several_colours():
    img = _open(render_png("A conceptual diagram of LangChain in use", 256, 256)).convert("RGB")
    assert len(img.getcolors(maxcolors=1 << 16) or []) > 20


def test_keywords_pick_motifs():
    assert set(motifs_for("A futuristic city with flying cars")) >= {"city", "vehicles", "sun"}
    assert "diagram" in motifs_for("A conceptual diagram of LangChain in use")
    assert motifs_for("zzz qqq") == []


def test_local_renderer_reports_size_model_and_usage():
    model = LocalImageRenderer(size="200x100")
    out = model.generate("A futuristic city with flying cars")
    assert (out.width, out.height) == (200, 100) == _open(out.png).size
    assert out.model == "lakechain-render"
    assert out.usage["images"] == 1
    assert model.generate("x y", "64x64").width == 64


@pytest.mark.parametrize("bad", ["512", "0x512", "99999x10", "axb", "10x10"])
def test_bad_sizes_are_rejected_with_the_expected_form(bad):
    with pytest.raises(ValueError, match="512x512|between 16"):
        parse_size(bad)


def test_decode_png_b64_accepts_png_and_rejects_other_data():
    png = render_png("ok", 32, 32)
    data, w, h = decode_png_b64(base64.b64encode(png).decode(), "test")
    assert data == png and (w, h) == (32, 32)
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="JPEG")
    with pytest.raises(MalformedResponseError, match="not a PNG"):
        decode_png_b64(base64.b64encode(buf.getvalue()).decode(), "test")
    with pytest.raises(MalformedResponseError, match="base64"):
        decode_png_b64("***not base64***", "test")
    with pytest.raises(MalformedResponseError, match="no b64_json"):
        decode_png_b64(None, "test")
