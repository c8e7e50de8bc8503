"""The HTML report of 10,000 synthetic tasks in headless Chromium: it loads without errors or
network fetches, pages, sorts and filters (no Spark; the real run's report: tests/spark/test_report.py)."""

from __future__ import annotations

import pytest

from lakechain.report.html import render

N = 10_000


@pytest.fixture
def big_page(synthetic_report, chromium, tmp_path):
    """A tab showing the report of N synthetic tasks, written under the test's tmp dir."""
    path = tmp_path / "reports" / "big.html"
    path.parent.mkdir()
    path.write_text(render(synthetic_report(N)), encoding="utf-8")
    with chromium.page() as page:
        page.open(path.as_uri())
        yield page


def _column(page, index: int) -> list[str]:
    return page.texts(f"#tasks tbody tr.row td:nth-child({index})")


def _tokens(page) -> list[int]:
    return [int(t.replace(",", "")) for t in _column(page, 4)]


def test_loads_without_errors_or_network_fetches(big_page, tmp_path):
    assert big_page.errors() == []
    fetched = [u for u in big_page.requests() if not u.startswith("data:")]
    assert fetched == [(tmp_path / "reports" / "big.html").as_uri()]
    figure = "document.querySelector('[data-figure=\"%s\"]').textContent"
    assert (big_page.evaluate(figure % "ok"), big_page.evaluate(figure % "error")) == ("9,000", "1,000")


def test_pages_through_ten_thousand_rows(big_page):
    text = "document.getElementById('%s').textContent"
    assert big_page.evaluate(text % "shown") == "Showing 1–50 of 10,000"
    assert big_page.evaluate(text % "page") == "page 1 of 200"
    assert len(_column(big_page, 1)) == 50
    big_page.click("#next")
    assert big_page.evaluate(text % "shown") == "Showing 51–100 of 10,000"
    assert _column(big_page, 1)[0] == "task-00050"
    assert big_page.evaluate("document.querySelector('#tasks tbody').children.length") == 50


def test_a_header_click_sorts_every_row_not_just_the_page(big_page):
    big_page.click("th[data-col=tokens]")
    assert (
        big_page.evaluate("document.querySelector('th[data-col=tokens]').getAttribute('aria-sort')")
        == "ascending"
    )
    ascending = _tokens(big_page)
    assert ascending == sorted(ascending) and ascending[0] == 440  # the smallest over all 10,000
    big_page.click("th[data-col=tokens]")
    descending = _tokens(big_page)
    assert descending == sorted(descending, reverse=True) and descending[0] == 400 + 96 + 40 + 12


def test_status_filter_and_search_narrow_the_rows(big_page):
    big_page.evaluate(
        "const s = document.getElementById('status'); s.value = 'error'; s.dispatchEvent(new Event('change'))"
    )
    assert big_page.evaluate("document.getElementById('shown').textContent") == (
        "Showing 1–50 of 1,000 (filtered from 10,000)"
    )
    assert set(_column(big_page, 2)) == {"error"}


def test_the_gallery_pages_and_opens_an_image(big_page):
    assert big_page.evaluate("document.getElementById('gpage').textContent") == "1 / 84"
    assert big_page.evaluate("document.querySelectorAll('#gallery .tile').length") == 24
    big_page.click("#gallery .tile button.thumb")
    assert big_page.evaluate("document.getElementById('lightbox').hidden") is False
    assert big_page.evaluate("document.getElementById('lb-title').textContent").startswith("task-00000")
