"""The report of tasks named with bytes that are not UTF-8, in headless Chromium.

The bundled prctl recording and the real sample with its compactor renamed to invalid UTF-8,
``<b>``, a quote and control bytes, in one dataset, replayed and reported: every chart
draws, the console stays clean, the names are shown escaped (``\\xff``, ``&lt;b&gt;``) and
no element or script of theirs gets into the page. Marked ``browser``; Chromium is found
(or skipped) as in tests/dashboards/test_report_browser.py.
"""

from __future__ import annotations

import pytest

from rmapscope.dashboards import build_report
from rmapscope.dataset import Dataset
from rmapscope.ingest import ingest
from rmapscope.replay import replay
from tests.dashboards.test_report import FIGURE_PANELS
from tests.dashboards.test_report_browser import assert_clean, chromium, load  # noqa: F401
from tests.ingest.test_invalid_bytes import RECORDING, _hostile_sample

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("csp", [True, False], ids=["with-csp", "escaping-only"])
def test_report_of_invalid_utf8_names_is_clean(chromium, tmp_path, csp):  # noqa: F811
    ds = Dataset(tmp_path / "ds")
    ingest(_hostile_sample(tmp_path), ds, host="hostile")
    ingest(str(RECORDING / "trace.txt.gz"), ds, host="prctl")
    replay(ds)
    page = build_report(ds, output=tmp_path / "report.html", csp=csp)
    text = page.read_text(encoding="utf-8")
    # the compactor's name in the charts' data: \xNN for the bytes, entities for the markup
    assert "\\\\xff\\\\xfe&lt;b&gt;&#34;\\u0001\\u001b\\\\xc3(ab" in text
    assert "<b>" not in text and "<i>" not in text
    attrs, console = load(chromium, page, tmp_path)
    # every chart the page has drew with data (the gap and page drill-down charts, with
    # nothing to show for these traces, are left out)
    assert int(attrs["figures"]) >= len(FIGURE_PANELS) - 2, attrs
    assert_clean(attrs, console, int(attrs["figures"]))
