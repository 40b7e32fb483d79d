"""The report in a real browser (headless Chromium): every chart drew with data, the console
stayed clean, and no script injected through trace strings ran.

The page checks itself once loaded (``_CHECK_JS`` in dashboards/_html.py) and writes
``<div id="rmapscope-check" data-figures data-ok data-failed data-errors data-warnings
data-pwned data-foreign>``, read here from ``--dump-dom``: ``data-ok`` figures have plotly
calcdata with points and drawn SVG/image marks; errors are uncaught errors, unhandled
rejections, CSP violations and console.error calls; warnings are plotly's; ``data-pwned`` is
``window.__pwned``, which the hostile payloads set; ``data-foreign`` lists elements the
report never makes (img, iframe, b, i, u, svg outside a chart, scripts without the nonce,
on* attributes). Chromium's own console log (stderr) is checked too. Two control pages
with a deliberately unescaped payload prove the detector sees a script that runs, and that
the Content-Security-Policy stops it.

Chromium is Debian's ``chromium`` package. When it is missing, the test installs it with
apt-get if it runs as root and ``CI`` or ``RMAPSCOPE_INSTALL_CHROMIUM`` is set; otherwise it
skips, saying so. Screenshots go to a temporary directory (printed); with
``RMAPSCOPE_KEEP_SCREENSHOTS=DIR`` they are copied to DIR.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from rmapscope.dashboards import _html, build_report, panels

from .test_report import FIGURE_PANELS, make_hostile_ds, make_real_ds

pytestmark = pytest.mark.browser

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--virtual-time-budget=15000",
]


def _find() -> str | None:
    return next((p for p in map(shutil.which, CANDIDATES) if p), None)


def _install() -> str | None:
    """apt-get install chromium, only as root and when allowed; the reason otherwise."""
    if os.geteuid() != 0:
        return "not root, so chromium cannot be installed here"
    if not (os.environ.get("CI") or os.environ.get("RMAPSCOPE_INSTALL_CHROMIUM")):
        return "set CI=1 or RMAPSCOPE_INSTALL_CHROMIUM=1 to let the test apt-get install it"
    if not shutil.which("apt-get"):
        return "no apt-get on this system"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, check=False)
        if r.returncode:
            tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["?"]
            return f"`{' '.join(cmd)}` failed: {tail[0]}"
    return None


@pytest.fixture(scope="module")
def chromium() -> str:
    path = _find()
    if path is None:
        why = _install()
        path = _find()
        if path is None:
            pytest.skip(
                "headless Chromium not found (Debian: apt-get install chromium); "
                f"{why or 'installed, but still not on PATH'}"
            )
    return path


@pytest.fixture(scope="module")
def real_ds(tmp_path_factory):
    return make_real_ds(tmp_path_factory.mktemp("browser-real"))


@pytest.fixture(scope="module")
def hostile_ds(tmp_path_factory):
    return make_hostile_ds(tmp_path_factory.mktemp("browser-hostile"))


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


def _run(chromium: str, page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [chromium, *FLAGS, f"--user-data-dir={profile}", *extra, page.resolve().as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)


def load(chromium: str, page: Path, tmp: Path) -> tuple[dict[str, str], list[str]]:
    """The page's self-check marker and Chromium's console lines."""
    r = _run(chromium, page, tmp / "profile", "--enable-logging=stderr", "--v=0", "--dump-dom")
    m = re.search(r'<div id="rmapscope-check"([^>]*)>', r.stdout)
    assert m, f"no self-check marker in the DOM (rc {r.returncode}): {r.stderr[-2000:]}"
    attrs = {k: html.unescape(v) for k, v in re.findall(r'data-([a-z]+)="([^"]*)"', m.group(1))}
    console = [ln for ln in r.stderr.splitlines() if ":CONSOLE" in ln]
    return attrs, console


def screenshot(chromium: str, page: Path, tmp: Path, shots: Path, name: str) -> Path:
    png = shots / f"{name}.png"
    r = _run(chromium, page, tmp / "profile-shot", "--window-size=1400,6000", f"--screenshot={png}")
    assert png.is_file() and png.stat().st_size > 10_000, r.stderr[-2000:]
    keep = os.environ.get("RMAPSCOPE_KEEP_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(png, Path(keep) / png.name)
        print(f"screenshot kept: {Path(keep) / png.name}")
    print(f"screenshot: {png}")
    return png


def assert_clean(attrs: dict[str, str], console: list[str], figures: int) -> None:
    assert attrs.get("done") == "1", attrs
    assert int(attrs["figures"]) == figures, attrs
    assert int(attrs["ok"]) == figures, f"charts without data: {attrs['failed']}"
    assert attrs["errors"] == "", attrs["errors"]
    assert attrs["warnings"] == "", attrs["warnings"]
    assert attrs["pwned"] == "", "an injected script ran"
    assert attrs["foreign"] == "", f"injected elements in the page: {attrs['foreign']}"
    assert console == [], console


def test_real_report_draws_every_chart(chromium, real_ds, tmp_path, shots):
    page = build_report(real_ds, output=tmp_path / "real.html")
    attrs, console = load(chromium, page, tmp_path)
    assert_clean(attrs, console, len(FIGURE_PANELS))
    screenshot(chromium, page, tmp_path, shots, "real-report")


@pytest.mark.parametrize("csp", [True, False], ids=["with-csp", "escaping-only"])
def test_hostile_report_runs_no_injected_script(chromium, hostile_ds, tmp_path, shots, csp):
    ds, _ = hostile_ds
    page = build_report(ds, output=tmp_path / "hostile.html", csp=csp)
    attrs, console = load(chromium, page, tmp_path)
    # the hostile trace has no lost events: every chart but the gap chart has data
    assert_clean(attrs, console, len(FIGURE_PANELS) - 1)
    if csp:
        screenshot(chromium, page, tmp_path, shots, "hostile-report")


@pytest.mark.parametrize("csp", [False, True], ids=["no-csp", "with-csp"])
def test_detector_sees_an_unescaped_payload(chromium, tmp_path, csp):
    """Control: a payload written raw into the page is seen (and the CSP blocks it)."""
    raw = panels.Panel(
        "control", "control", "", None,
        table_html='<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>',
    )  # fmt: skip
    page = tmp_path / "control.html"
    text = _html.page(
        title="control",
        meta=[],
        sections=[_html.Section("s", "s", [raw])],
        embed_plotly=False,  # no chart: no need for plotly (and no network)
        with_csp=csp,
    )
    page.write_text(text)
    attrs, _ = load(chromium, page, tmp_path)
    assert "img" in attrs["foreign"].split() and "script" in attrs["foreign"].split()
    if csp:
        assert attrs["pwned"] == ""
        assert "csp: script-src" in attrs["errors"], attrs["errors"]
    else:
        assert attrs["pwned"] in ("1", "2")
