"""The run report's HTML: a :class:`~lakechain.report.data.ReportData` dict → one page (pure).

One self-contained file: the CSS and JS are inlined from ``templates/``, and the rows the
answers table and the gallery page through travel as one JSON block (Jinja's ``tojson``
escapes ``<``, ``>``, ``&`` and ``'``, so no text can close the script element). Every other
text goes through Jinja's autoescaping; the page's script only ever sets ``textContent``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, TypedDict

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from lakechain.report.data import Histogram, ReportData

CHART_W, CHART_H = 640, 180
"""The score histogram's drawing area in SVG units (it scales to the column's width)."""


class Bar(TypedDict):
    x: float
    y: float
    w: float
    h: float
    count: int
    lo: float
    hi: float


def histogram_bars(h: Histogram, width: float = CHART_W, height: float = CHART_H) -> list[Bar]:
    """Geometry of the histogram's bars: equal widths, heights scaled to the fullest bin."""
    n = len(h["counts"])
    top = max(h["counts"], default=0) or 1
    step = (h["hi"] - h["lo"]) / n if n else 0.0
    w = width / n if n else width
    return [
        {
            "x": round(i * w, 2),
            "y": round(height - c / top * height, 2),
            "w": round(max(w - 2, 1), 2),
            "h": round(c / top * height, 2),
            "count": c,
            "lo": h["lo"] + i * step,
            "hi": h["lo"] + (i + 1) * step,
        }
        for i, c in enumerate(h["counts"])
    ]


def ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """``n`` evenly spaced axis labels from ``lo`` to ``hi``."""
    if n < 2 or hi <= lo:
        return [lo]
    return [lo + (hi - lo) * i / (n - 1) for i in range(n)]


def number(value: Any) -> str:
    """``12345`` → ``12,345``; None → an em dash (not recorded)."""
    if value is None:
        return "—"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}"
    return f"{int(value):,}"


def seconds(value: Any) -> str:
    """Seconds as people read them: ``0.42 s``, ``12.3 s``, ``4 min 05 s``."""
    if value is None:
        return "—"
    v = float(value)
    if v < 10:
        return f"{v:.2f} s"
    if v < 120:
        return f"{v:.1f} s"
    return f"{int(v // 60)} min {int(v % 60):02d} s"


def score(value: float) -> str:
    """A retrieval score to three significant digits (RRF scores are ~0.03, cosines ~0.6)."""
    return f"{value:.3g}"


def usd(value: Any) -> str:
    return "—" if value is None else f"${float(value):,.4f}" if float(value) < 1 else f"${float(value):,.2f}"


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("lakechain.report", "templates"),
        autoescape=select_autoescape(["html", "j2"], default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(number=number, seconds=seconds, score=score, usd=usd)
    return env


def render(data: ReportData) -> str:
    """The whole page for ``data``."""
    stages = data["stages"]
    total = sum(stages.values()) or 1.0
    hist = data["histogram"]
    return (
        environment()
        .get_template("report.html.j2")
        .render(
            d=data,
            payload={
                "columns": data["columns"],
                "rows": data["rows"],
                "chunks": data["chunks"],
                "images": data["images"],
            },
            stage_share={k: v / total for k, v in stages.items()},
            phase_total=sum(data["phases"].values()) or 1.0,
            bars=histogram_bars(hist) if hist else [],
            axis=ticks(hist["lo"], hist["hi"]) if hist else [],
            chart={"w": CHART_W, "h": CHART_H},
            errors_total=sum(g["count"] for g in data["errors"]) or 1,
        )
    )
