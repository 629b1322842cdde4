"""The tests' headless Chromium keeps its temporary files out of the system's temporary folder.

Chromium writes `org.chromium.Chromium.*` files and folders into its TMPDIR while it runs and removes
them when it quits cleanly; stopped from outside (chromedriver's teardown racing it, a kill) it leaves
them behind: about one a suite run in /tmp before `tests/browser.py` gave it a TMPDIR of its own, in the
folder that holds its profile and is removed with it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from tests.browser import BrowserMissing, chromium
from tests.helpers import skip_outside_ci

CHROMIUM_TEMPORARY = "org.chromium.Chromium."  # the prefix of what Chromium writes into its TMPDIR


def chromium_files(folder: Path) -> set[Path]:
    return {path for path in folder.iterdir() if path.name.startswith(CHROMIUM_TEMPORARY)}


def test_chromium_writes_its_temporary_files_into_a_folder_removed_after_the_session() -> None:
    system = Path(tempfile.gettempdir())
    before = chromium_files(system)
    try:
        with chromium() as browser:
            browser.get("data:text/html,<p>drawn</p>")
            assert browser.execute("return document.querySelector('p').textContent") == "drawn"
            assert chromium_files(system) - before == set()  # none in /tmp, while it runs
            scratch = browser.scratch
            assert scratch is not None and chromium_files(scratch / "tmp")  # where they are instead
    except BrowserMissing as missing:
        skip_outside_ci(str(missing))
    assert not scratch.exists()  # its profile and temporary files, removed with their folder
    assert chromium_files(system) - before == set()
