"""Image models: OpenAI-family endpoints (base64 PNG) and a deterministic local renderer.

Why not LangChain's ``DallEAPIWrapper``: it only returns URLs and crashes on base64-only
answers, while a batch pipeline must store the image bytes themselves (URLs expire). Every
model here returns real PNG bytes, checked by signature and IHDR header.

The local renderer draws an inspectable picture offline: colours, shapes and motifs are
seeded by a hash of the prompt (same prompt → same bytes), a few keywords pick motifs
(city skyline, vehicles, diagram of linked nodes, sun, …), and the prompt is printed as a
caption so a reviewer can see which task produced which file.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import math
import random
import re
import struct
import textwrap
from dataclasses import dataclass, field
from typing import Any, Protocol

from lakechain.chains.errors import MalformedResponseError, wrap_provider_error
from lakechain.chains.usage import empty_usage, usage_from_openai
from lakechain.config import ConfigError, ImagesConfig

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_SIDE = 4096
LOCAL_IMAGE_MODEL = "lakechain-render"


@dataclass
class GeneratedImage:
    png: bytes
    width: int
    height: int
    model: str
    revised_prompt: str | None = None
    usage: dict[str, int] = field(default_factory=empty_usage)


class ImageModel(Protocol):
    model: str

    def generate(self, prompt: str, size: str | None = None) -> GeneratedImage: ...


def parse_size(size: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d{1,5})\s*x\s*(\d{1,5})\s*", str(size))
    if not m:
        raise ValueError(f"image size {size!r}: expected WIDTHxHEIGHT, e.g. 512x512")
    w, h = int(m.group(1)), int(m.group(2))
    if not (16 <= w <= MAX_SIDE and 16 <= h <= MAX_SIDE):
        raise ValueError(f"image size {size!r}: each side must be between 16 and {MAX_SIDE} pixels")
    return w, h


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; raises ``ValueError`` if it is not a PNG."""
    if len(data) < 24 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        raise ValueError("not a PNG (bad signature or missing IHDR)")
    w, h = struct.unpack(">II", data[16:24])
    return int(w), int(h)


def decode_png_b64(b64: str | None, what: str) -> tuple[bytes, int, int]:
    """Decode a ``b64_json`` field and check it holds a PNG."""
    if not b64:
        raise MalformedResponseError(f"{what}: response has no b64_json image data")
    try:
        data = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedResponseError(f"{what}: b64_json is not valid base64 ({exc})") from exc
    try:
        w, h = png_size(data)
    except ValueError as exc:
        raise MalformedResponseError(f"{what}: image data is not a PNG ({exc})") from exc
    return data, w, h


# --- local renderer --------------------------------------------------------------------------

_PALETTES = [
    ((18, 32, 71), (94, 63, 138), (255, 196, 87), (86, 204, 242)),
    ((12, 59, 46), (50, 130, 90), (242, 233, 78), (255, 120, 90)),
    ((60, 20, 40), (190, 70, 90), (255, 220, 180), (90, 200, 190)),
    ((25, 25, 35), (70, 90, 130), (240, 240, 240), (255, 140, 0)),
    ((230, 240, 250), (150, 190, 230), (40, 60, 90), (230, 80, 80)),
]

_MOTIFS = {
    "city": ("city", "skyline", "building", "urban", "street", "tower"),
    "vehicles": ("car", "cars", "flying", "vehicle", "drone", "plane", "ship", "rocket"),
    "diagram": ("diagram", "chain", "graph", "pipeline", "architecture", "flow", "framework", "network"),
    "sun": ("sun", "sunset", "sunrise", "futuristic", "sky", "light", "star"),
    "data": ("data", "analytics", "spark", "database", "table", "lake", "chart"),
}


def motifs_for(prompt: str) -> list[str]:
    words = set(re.findall(r"[a-z0-9]+", prompt.lower()))
    return [name for name, keys in _MOTIFS.items() if words & set(keys)]


def _mix(a: tuple[int, int, int], b: tuple[int, int, int], t: float) -> tuple[int, int, int]:
    return (int(a[0] + (b[0] - a[0]) * t), int(a[1] + (b[1] - a[1]) * t), int(a[2] + (b[2] - a[2]) * t))


@dataclass
class _Canvas:
    """What every motif painter needs: the drawing, its size, the palette and the prompt's rng."""

    draw: Any
    rng: random.Random
    width: int
    height: int
    palette: tuple[Any, Any, Any, Any]

    @property
    def ground(self) -> int:
        return int(self.height * 0.78)


def render_png(prompt: str, width: int = 512, height: int = 512, caption: bool = True) -> bytes:
    """A deterministic illustration of ``prompt`` as PNG bytes of exactly ``width``×``height``:
    a gradient sky, then the motifs the prompt names, in a fixed order, then the caption."""
    from PIL import Image, ImageDraw

    seed = int.from_bytes(hashlib.sha256(prompt.encode("utf-8")).digest()[:8], "big")
    palette = _PALETTES[seed % len(_PALETTES)]
    img = Image.new("RGB", (width, height))
    c = _Canvas(ImageDraw.Draw(img), random.Random(seed), width, height, palette)
    for y in range(height):  # vertical gradient sky
        c.draw.line([(0, y), (width, y)], fill=_mix(palette[0], palette[1], y / max(1, height - 1)))
    motifs = motifs_for(prompt)
    if "sun" in motifs or not motifs:
        _sun(c)
    if not motifs:
        _abstract(c)
    if "city" in motifs or "data" in motifs:
        _city(c)
    if "data" in motifs and "city" not in motifs:
        _bars(c)
    if "vehicles" in motifs:
        _vehicles(c)
    if "diagram" in motifs:
        _diagram(c)
    if caption and prompt.strip():
        _caption(img, c, prompt)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def _sun(c: _Canvas) -> None:
    r = int(min(c.width, c.height) * c.rng.uniform(0.08, 0.16))
    cx, cy = int(c.width * c.rng.uniform(0.15, 0.85)), int(c.height * c.rng.uniform(0.12, 0.35))
    c.draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=c.palette[2])


def _abstract(c: _Canvas) -> None:
    """Shapes seeded by the prompt, for a prompt that names no motif."""
    accent, accent2 = c.palette[2], c.palette[3]
    for _ in range(6 + c.rng.randrange(6)):
        x, y = c.rng.randrange(c.width), c.rng.randrange(c.height)
        s = int(min(c.width, c.height) * c.rng.uniform(0.05, 0.2))
        colour = _mix(accent, accent2, c.rng.random())
        if c.rng.random() < 0.5:
            c.draw.ellipse([x - s, y - s, x + s, y + s], outline=colour, width=max(2, s // 8))
        else:
            c.draw.regular_polygon((x, y, s), n_sides=3 + c.rng.randrange(4), fill=colour)


def _city(c: _Canvas) -> None:
    """A skyline with lit windows, on dark ground."""
    bg0, accent, ground = c.palette[0], c.palette[2], c.ground
    x = 0
    while x < c.width:
        w = int(c.width * c.rng.uniform(0.05, 0.12))
        h = int(c.height * c.rng.uniform(0.2, 0.55))
        c.draw.rectangle([x, ground - h, x + w - 2, ground], fill=_mix(bg0, (10, 10, 10), 0.5))
        for wy in range(ground - h + 6, ground - 6, max(8, c.height // 40)):
            for wx in range(x + 4, x + w - 6, max(8, c.width // 50)):
                if c.rng.random() < 0.45:
                    c.draw.rectangle([wx, wy, wx + 3, wy + 4], fill=accent)
        x += w
    c.draw.rectangle([0, ground, c.width, c.height], fill=_mix(bg0, (0, 0, 0), 0.6))


def _bars(c: _Canvas) -> None:
    """A bar chart standing on the ground."""
    bars = 5 + c.rng.randrange(4)
    bw = c.width // (bars * 2)
    for i in range(bars):
        h = int(c.height * c.rng.uniform(0.1, 0.4))
        x0 = int(c.width * 0.1) + i * 2 * bw
        c.draw.rectangle(
            [x0, c.ground - h, x0 + bw, c.ground], fill=_mix(c.palette[2], c.palette[3], i / bars)
        )


def _vehicles(c: _Canvas) -> None:
    accent, accent2 = c.palette[2], c.palette[3]
    for _ in range(3 + c.rng.randrange(3)):
        cx, cy = c.rng.randrange(c.width), int(c.height * c.rng.uniform(0.15, 0.6))
        s = int(min(c.width, c.height) * c.rng.uniform(0.03, 0.06))
        c.draw.ellipse([cx - 2 * s, cy - s // 2, cx + 2 * s, cy + s // 2], fill=accent2)
        c.draw.ellipse([cx - s, cy - s, cx + s, cy], fill=_mix(accent2, (255, 255, 255), 0.5))
        c.draw.line([cx - 4 * s, cy + s // 3, cx - 2 * s, cy], fill=accent, width=max(1, s // 4))


def _diagram(c: _Canvas) -> None:
    """Numbered nodes on a ring, linked to each other and to a hub."""
    bg0, bg1, accent, accent2 = c.palette
    n = 4 + c.rng.randrange(3)
    hx, hy, rad = c.width / 2.0, c.height * 0.42, min(c.width, c.height) * 0.28
    nodes = [
        (hx + rad * math.cos(2 * math.pi * i / n), hy + rad * math.sin(2 * math.pi * i / n)) for i in range(n)
    ]
    lw = max(2, c.width // 150)
    for i, (nx0, ny0) in enumerate(nodes):
        nx1, ny1 = nodes[(i + 1) % n]
        c.draw.line([nx0, ny0, nx1, ny1], fill=accent, width=lw)
        c.draw.line([nx0, ny0, hx, hy], fill=_mix(accent, bg1, 0.5), width=max(1, lw // 2))
    s = int(min(c.width, c.height) * 0.05)
    for i, (nx, ny) in enumerate(nodes):
        c.draw.rounded_rectangle([nx - s, ny - s * 0.7, nx + s, ny + s * 0.7], radius=s // 3, fill=accent2)
        c.draw.text((nx, ny), str(i + 1), fill=bg0, anchor="mm")
    c.draw.ellipse([hx - s, hy - s, hx + s, hy + s], fill=accent)


def _caption(img: Any, c: _Canvas, prompt: str) -> None:
    """The prompt, wrapped on a translucent band at the bottom."""
    from PIL import Image, ImageFont

    size = max(10, min(c.width, c.height) // 28)
    font = ImageFont.load_default(size=size)
    lines = textwrap.wrap(" ".join(prompt.split()), max(10, int(c.width / (size * 0.55))))[:3]
    band = (len(lines) * (size + 4)) + 10
    overlay = Image.new("RGBA", (c.width, band), (0, 0, 0, 150))
    img.paste(overlay, (0, c.height - band), overlay)
    for i, line in enumerate(lines):
        c.draw.text((8, c.height - band + 5 + i * (size + 4)), line, fill=(255, 255, 255), font=font)


class LocalImageRenderer:
    """Offline image model: :func:`render_png` behind the :class:`ImageModel` interface."""

    def __init__(self, model: str = "lakechain-render", size: str = "512x512") -> None:
        self.model = model
        self.size = size
        parse_size(size)

    def generate(self, prompt: str, size: str | None = None) -> GeneratedImage:
        w, h = parse_size(size or self.size)
        png = render_png(prompt, w, h)
        usage = empty_usage()
        usage["images"] = 1
        return GeneratedImage(png=png, width=w, height=h, model=self.model, revised_prompt=None, usage=usage)


# --- OpenAI-family -----------------------------------------------------------------------------


class OpenAIImageModel:
    """``images.generate`` on OpenAI, Azure OpenAI or any OpenAI-compatible server.

    Retries on 429/5xx/timeouts are the ``openai`` client's own (``max_retries``); what still
    fails is raised as a :class:`~lakechain.chains.errors.ProviderError`.
    """

    def __init__(self, client: Any, model: str, size: str = "1024x1024", provider: str = "openai") -> None:
        self.client = client
        self.model = model
        self.size = size
        self.provider = provider

    def generate(self, prompt: str, size: str | None = None) -> GeneratedImage:
        size = size or self.size
        parse_size(size)
        what = f"image model '{self.model}' ({self.provider})"
        kwargs: dict[str, Any] = {"model": self.model, "prompt": prompt, "size": size, "n": 1}
        if not self.model.startswith("gpt-image"):  # gpt-image-* always answer base64 and reject the flag
            kwargs["response_format"] = "b64_json"
        try:
            resp = self.client.images.generate(**kwargs)
        except Exception as exc:  # classified, re-raised
            raise wrap_provider_error(exc, what) from exc
        data = getattr(resp, "data", None)
        if not data:
            raise MalformedResponseError(f"{what}: response has no image data")
        item = data[0]
        png, w, h = decode_png_b64(getattr(item, "b64_json", None), what)
        usage = usage_from_openai(getattr(resp, "usage", None))
        usage["images"] = 1
        return GeneratedImage(
            png=png,
            width=w,
            height=h,
            model=self.model,
            revised_prompt=getattr(item, "revised_prompt", None),
            usage=usage,
        )


def make_image_model(cfg: ImagesConfig) -> ImageModel:
    """The image model named by ``settings.images``."""
    if cfg.provider == "local":
        return LocalImageRenderer(cfg.model or LOCAL_IMAGE_MODEL, cfg.size)
    cfg.check_remote("images")
    if cfg.provider != "azure_openai" and cfg.model in ("", LOCAL_IMAGE_MODEL):
        raise ConfigError(
            f"images.model: name the remote model for provider '{cfg.provider}' (e.g. dall-e-3)"
        )
    import openai

    key = cfg.api_key.get_secret_value() if cfg.api_key is not None else "not-needed"
    common: dict[str, Any] = {"api_key": key, "max_retries": cfg.max_retries, "timeout": cfg.timeout_s}
    if cfg.provider == "azure_openai":
        client: openai.OpenAI = openai.AzureOpenAI(
            azure_endpoint=str(cfg.base_url),
            api_version=cfg.api_version,
            azure_deployment=cfg.deployment,
            **common,
        )
        return OpenAIImageModel(client, cfg.deployment or cfg.model, cfg.size, cfg.provider)
    client = openai.OpenAI(base_url=cfg.base_url, **common)
    return OpenAIImageModel(client, cfg.model, cfg.size, cfg.provider)
