"""The HTML run report without Spark: rendering, escaping, size at 10,000 tasks, the data shaping."""

from __future__ import annotations

import io
import json
import re

from PIL import Image

from lakechain.report import data as rd
from lakechain.report.html import histogram_bars, render, score, seconds
from lakechain.tasks.report import error_kind

HOSTILE = '<script>alert("x")</script></script><img src=x onerror=alert(1)> & "quotes"'


def _payload(page: str) -> dict:
    block = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S)
    assert block is not None
    return json.loads(block.group(1))


def test_renders_the_figures_sections_and_embedded_rows(synthetic_report):
    d = synthetic_report(40)
    page = render(d)
    assert page.startswith("<!doctype html>") and "run-20261130T120000-abcdef12" in page
    assert re.search(r'data-figure="ok">36<', page) and re.search(r'data-figure="error">4<', page)
    assert re.search(r'data-figure="skipped">5<', page) and re.search(r'data-figure="cache_hits">10<', page)
    for section in ('id="answers"', 'id="failures"', 'id="images"', 'id="retrieval"', 'id="stages"'):
        assert section in page
    assert page.count("<rect ") == 24  # one histogram bar per bin
    payload = _payload(page)
    assert len(payload["rows"]) == 40 and payload["columns"] == rd.ROW_COLUMNS
    assert len(payload["images"]) == 8


def test_hostile_text_cannot_inject_markup(synthetic_report):
    d = synthetic_report(4, answer=HOSTILE)
    d["errors"][0]["reason"] = HOSTILE
    d["errors"][0]["examples"][0]["error"] = HOSTILE
    d["notes"] = [HOSTILE]
    d["source"] = HOSTILE
    page = render(d)
    # Only the page's own two script elements; no injected tag survives anywhere.
    assert page.count("<script") == 2 and page.count("</script>") == 2
    assert "<img src=x" not in page and "&lt;script&gt;" in page
    # The JSON block still carries the text verbatim for the page's script (set as textContent).
    assert _payload(page)["rows"][0][rd.ROW_COLUMNS.index("answer")] == HOSTILE


def test_ten_thousand_tasks_render_to_a_few_megabytes(synthetic_report):
    page = render(synthetic_report(10_000))
    size = len(page.encode("utf-8"))
    assert size < 6 * 2**20, f"{size / 2**20:.1f} MB"
    assert len(_payload(page)["rows"]) == 10_000


def test_cited_chunks_are_stored_once_and_texts_capped():
    limits = {**rd.DEFAULT_LIMITS, "chunk_chars": 20, "answer_chars": 10}
    src = [{"chunk_id": "c1", "doc_id": "d1", "score": 0.5}]
    rows = [
        {"task_id": "a", "status": "ok", "answer": "x" * 50, "sources": src},
        {
            "task_id": "b",
            "status": "ok",
            "answer": "short",
            "sources": src + [{"chunk_id": "c2", "doc_id": "d2"}],
        },
    ]
    out, chunks = rd.compact_rows(rows, {"c1": "y" * 100}, limits)
    assert chunks == [["c1", "d1", "y" * 19 + "…"], ["c2", "d2", None]]
    assert out[0][rd.ROW_COLUMNS.index("answer")] == "x" * 9 + "…"
    assert out[1][rd.ROW_COLUMNS.index("sources")] == [[0, 0.5], [1, 0.0]]


def test_thumbnails_are_small_jpeg_data_uris():
    buf = io.BytesIO()
    Image.new("RGB", (512, 512), (40, 90, 200)).save(buf, "PNG")
    uri = rd.thumbnail(buf.getvalue(), 96)
    assert uri is not None and uri.startswith("data:image/jpeg;base64,") and len(uri) < 4000
    assert rd.thumbnail(b"not a png", 96) is None


def test_images_link_relative_to_the_report_folder():
    assert rd.image_href("/lake/images/t1.png", "/lake/reports") == "../images/t1.png"
    assert rd.image_href("/my lake #1/images/t1.png", "/out") == "../my%20lake%20%231/images/t1.png"
    assert rd.image_href("dbfs:/Volumes/x/t1.png", "/lake/reports") == "dbfs:/Volumes/x/t1.png"
    assert rd.image_href(None, "/lake/reports") is None


def test_histogram_is_dense_and_bars_scale_to_the_fullest_bin():
    h = rd.histogram(0.0, 1.0, {0: 2, 3: 4}, 4)
    assert h["counts"] == [2, 0, 0, 4] and h["n"] == 6
    bars = histogram_bars(h, width=400, height=100)
    assert [b["h"] for b in bars] == [50.0, 0.0, 0.0, 100.0] and bars[3]["x"] == 300.0


def test_number_formats_read_well():
    assert seconds(0.421) == "0.42 s" and seconds(250) == "4 min 10 s"
    assert score(0.0327) == "0.0327" and score(0.61) == "0.61"


def test_fields_a_newer_run_report_adds_are_listed_in_details():
    assert rd.details({"ok": 1, "pending_by_reason": {"model": 3}, "empty": []}, {"ok"}) == {
        "pending_by_reason": {"model": 3}
    }


def test_error_kind_groups_like_the_spark_expression_documents():
    assert error_kind("qa: timeout: after 60 s; attempt 3") == "qa: timeout"
    assert error_kind(None) == "unknown"
