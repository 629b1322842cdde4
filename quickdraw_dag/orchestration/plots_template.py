"""The HTML template `dvc plots show` fills: DVC's own page, with Vega, Vega-Lite and vega-embed inline.

DVC's default page loads the three libraries from a CDN, so offline (or behind a
firewall) its Vega plots, the training curves among them, are blank. The
project's `.dvc/config` points `plots.html_template` at `.dvc/plots_template.html`,
which this module writes from the libraries' npm packages; the page leaves out
DVC's `{scripts}` placeholder, so no CDN tag is added. Regenerate it (on a
machine with npm) with:

    npm pack vega@5 vega-lite@5 vega-embed@6
    python -m quickdraw_dag.orchestration.plots_template vega-*.tgz vega-lite-*.tgz vega-embed-*.tgz

All three are BSD-3-Clause (the Vega project, University of Washington
Interactive Data Lab); their names and versions head the page.
"""

from __future__ import annotations

import json
import sys
import tarfile
from collections.abc import Sequence
from pathlib import Path

TEMPLATE = Path(".dvc") / "plots_template.html"
# The library each package provides, its global, and the file of its browser build.
BUILDS = {"vega": "build/vega.min.js", "vega-lite": "build/vega-lite.min.js", "vega-embed": "build/vega-embed.min.js"}


def read_package(tarball: Path) -> tuple[str, str, str]:
    """(name, version, minified browser build) from an `npm pack` tarball."""
    with tarfile.open(tarball) as archive:
        manifest = json.loads(archive.extractfile("package/package.json").read())
        name = manifest["name"]
        if name not in BUILDS:
            raise ValueError(f"{tarball}: package {name!r} is none of {sorted(BUILDS)}")
        code = archive.extractfile(f"package/{BUILDS[name]}").read().decode("utf-8")
    if "</script" in code.lower():
        raise ValueError(f"{tarball}: its build contains '</script', which would end the inline script")
    return name, manifest["version"], code


def page(packages: Sequence[tuple[str, str, str]]) -> str:
    """DVC's page (dvc_render's PAGE_HTML) with the libraries inline, in load order, and no `{scripts}`."""
    by_name = {name: (version, code) for name, version, code in packages}
    missing = sorted(set(BUILDS) - set(by_name))
    if missing:
        raise ValueError(f"missing packages: {', '.join(missing)}")
    credits = ", ".join(f"{name} {by_name[name][0]}" for name in BUILDS)
    scripts = "\n".join(f"<script>\n{by_name[name][1]}\n</script>" for name in BUILDS)
    return (
        "<!DOCTYPE html>\n<html>\n<head>\n    {refresh_tag}\n    <title>DVC Plot</title>\n"
        f"<!-- offline: {credits} (BSD-3-Clause), inline; see quickdraw_dag/orchestration/plots_template.py -->\n"
        f"{scripts}\n"
        "    <style>\n        table {\n            border-spacing: 15px;\n        }\n    </style>\n"
        "</head>\n<body>\n    {plot_divs}\n</body>\n</html>\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    tarballs = [Path(arg) for arg in (argv if argv is not None else sys.argv[1:])]
    if len(tarballs) != len(BUILDS):
        print(f"usage: python -m {__spec__.name} VEGA.tgz VEGA-LITE.tgz VEGA-EMBED.tgz (npm pack)", file=sys.stderr)
        return 2
    try:
        text = page([read_package(path) for path in tarballs])
    except (OSError, KeyError, ValueError, tarfile.TarError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    TEMPLATE.write_text(text, encoding="utf-8")
    print(f"wrote {TEMPLATE} ({len(text) // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
