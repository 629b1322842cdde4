"""`dvc plots show` renders the Vega plots offline: the project's HTML template carries Vega inline (issue 28)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from quickdraw_dag.artifacts import Catalog
from quickdraw_dag.orchestration.plots_template import TEMPLATE
from tests.helpers import dvc

pytestmark = pytest.mark.slow

# The number of painted pixels in each Vega view's canvas (0: a blank plot), and the views' count.
PAINTED = """
// Vega draws into a canvas.marks (or an svg.marks); vega-embed's menu icons and spare 0x0 canvases are not views
const views = [...document.querySelectorAll('.vega-embed canvas.marks, .vega-embed svg.marks')].filter(
  view => view.tagName.toLowerCase() === 'svg' || (view.width && view.height));
return views.map(view => {
  if (view.tagName.toLowerCase() === 'svg') return view.querySelectorAll('path, line, rect, text').length;
  if (!view.width || !view.height) return 0;
  const data = view.getContext('2d').getImageData(0, 0, view.width, view.height).data;
  let painted = 0;
  for (let i = 3; i < data.length; i += 4) if (data[i] > 0) painted++;
  return painted;
});
"""


def training_log(project: Path) -> None:
    """A training run's per-epoch log, as train writes it (the plot dvc.yaml declares reads it)."""
    catalog = Catalog.under(project)
    catalog.training_log.parent.mkdir(parents=True, exist_ok=True)
    rows = ["epoch,accuracy,learning_rate,loss,val_accuracy,val_loss"]
    for e in range(5):
        rows.append(f"{e},{0.3 + 0.1 * e:.2f},0.001,{1.5 - 0.2 * e:.2f},{0.25 + 0.1 * e:.2f},{1.6 - 0.2 * e:.2f}")
    catalog.training_log.write_text("\n".join(rows) + "\n")


def render(browser, project: Path, out: str, *args: str) -> list[int]:
    done = dvc(project, "plots", "show", "-o", out, *args)
    assert done.returncode == 0, done.stderr
    page = project / out / "index.html"
    browser.get(page.as_uri())
    browser.wait_for("return document.readyState === 'complete'")
    if not browser.execute("return typeof vegaEmbed === 'function'"):
        return browser.execute(PAINTED)  # Vega never loaded (DVC's page fetches it from a CDN): nothing will paint
    with contextlib.suppress(Exception):  # a blank page is an outcome the test asserts on
        browser.wait_for(f"const p = (() => {{{PAINTED}}})(); return p.length && p.every(n => n > 500)", timeout=20)
    return browser.execute(PAINTED)


def test_dvc_plots_show_renders_the_training_curves_offline(project: Path, browser, tmp_path: Path) -> None:
    assert (project / TEMPLATE).is_file()
    training_log(project)
    painted = render(browser, project, "dvc_plots")
    html = (project / "dvc_plots" / "index.html").read_text()
    assert "cdn.jsdelivr.net" not in html and "https://" not in html.split("<script>")[0]  # nothing from elsewhere
    # the training curves (dvc.yaml's plot) and train's per-epoch log: both drawn, thousands of pixels each
    assert len(painted) == 2 and min(painted) > 2000, painted
    browser.screenshot(tmp_path / "dvc_plots.png")
    # DVC's default page, which loads Vega from a CDN, stays blank here (no network in tests): what was fixed
    from dvc_render.html import PAGE_HTML

    default = tmp_path / "default.html"
    default.write_text(PAGE_HTML)
    assert render(browser, project, "cdn_plots", "--html-template", str(default)) == []
