"""The HTML diff report in headless Chromium, checked like the report
(tests/dashboards/test_report_browser.py): every chart drew with data, the console stayed
clean, and nothing injected through a trace's host name or comm ran."""

from __future__ import annotations

import pytest

from rmapscope.analysis.diff import diff, side_predicate
from rmapscope.analysis.session import DuckDBSession
from rmapscope.dashboards.diff import write_diff_report
from tests.analysis._diff_data import stretched_ds

from .test_report import HOSTILE_HOST
from .test_report_browser import assert_clean, chromium, hostile_ds, load, screenshot, shots

pytestmark = pytest.mark.browser
__all__ = ["chromium", "hostile_ds", "shots"]  # fixtures, used by name


def _figures(result) -> int:
    return sum(1 for xa, xb in result.latencies.values() if xa.size or xb.size) + 1


def test_stretched_diff_draws_every_chart(chromium, tmp_path, shots):
    ds = stretched_ds(tmp_path / "ds")
    result = diff(DuckDBSession(ds), "host = 'a'", "host = 'b'")
    page = write_diff_report(result, tmp_path / "diff.html")
    attrs, console = load(chromium, page, tmp_path)
    assert_clean(attrs, console, _figures(result))
    screenshot(chromium, page, tmp_path, shots, "stretched-diff")


@pytest.mark.parametrize("csp", [True, False], ids=["with-csp", "escaping-only"])
def test_hostile_diff_runs_no_injected_script(chromium, hostile_ds, tmp_path, csp):
    ds, _ = hostile_ds
    side = side_predicate("host:" + HOSTILE_HOST)
    result = diff(DuckDBSession(ds), side, side, labels=(HOSTILE_HOST, "<b>B</b>"))
    page = write_diff_report(result, tmp_path / "hostile.html", dataset=HOSTILE_HOST, csp=csp)
    text = page.read_text()
    assert "<script>alert" not in text and "<b>B</b>" not in text
    attrs, console = load(chromium, page, tmp_path)
    assert_clean(attrs, console, _figures(result))
