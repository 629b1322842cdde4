"""`schedule.cron` and `schedule.timezone`: what params validation accepts, Prefect accepts (issue 25, point 9).

Validation used to ask another cron library (cronsim), which takes
`0 3 * * 5L`; Prefect refuses it, so `make serve` printed "serving…" and a
traceback. The expressions below are judged by the params validator and by
Prefect's own `CronSchedule` (the model a deployment's `Cron` becomes), and
the two must agree.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quickdraw_dag.config.loading import load_params
from quickdraw_dag.errors import ConfigError
from tests.helpers import REPO, run_module

CRONS = [
    "0 3 * * 5L",  # the issue's: croniter's "last Friday" needs a `#`-free form Prefect refuses
    "0 3 * * 5l",
    "0 3 * * L",
    "0 3 LW * *",
    "0 3 15W * *",
    "0 3 L * *",
    "0 3 * * 5#2",
    "0 3 * * 5#6",
    "0 3 * * 1",
    "0 3 * * 7",
    "0 3 * * 0-6",
    "0 3 * * MON-FRI",
    "0 3 * * sun,sat",
    "0 3 1 JAN *",
    "*/15 * * * *",
    "*/0 * * * *",
    "60 * * * *",
    "0 24 * * *",
    "0 3 0 * *",
    "0 3 32 * *",
    "0 3 * 13 *",
    "0 3 * * 8",
    "0 3 31 2 *",  # Feb 31 never fires
    "0 3 30 2 *",
    "0 0 29 2 *",  # leap years only: it fires
    "0 3 1-31/2 * *",
    "0 3 * * H",
    "H 3 * * *",
    "R 3 * * *",
    "0 3 ? * *",
    "0-59/61 * * * *",
    "1,2,3 * * * *",
    "-1 * * * *",
    "0 3 * * 1-",
    "0 3 * * ,",
    "0 3 * * 1 2",  # six fields: croniter's seconds, not a cron here
    "@daily",
    "",
]


def _prefect_accepts(cron: str) -> bool:
    from prefect.client.schemas.schedules import CronSchedule

    if len(cron.split()) != 5:
        return False  # the project's rule: a five-field cron (Prefect also takes seconds and @aliases)
    try:
        schedule = CronSchedule(cron=cron, timezone="UTC")
    except ValueError:
        return False
    from datetime import UTC, datetime

    from prefect._vendor.croniter import CroniterError, croniter

    try:  # what Prefect's scheduler asks next: a date it will run on
        croniter(schedule.cron, datetime(2026, 1, 1, tzinfo=UTC)).get_next(datetime)
    except CroniterError:
        return False
    return True


def _we_accept(cron: str) -> bool:
    try:
        load_params(REPO / "params.yaml", [f"schedule.cron={cron!r}"], root=None)
    except ConfigError:
        return False
    return True


@pytest.mark.parametrize("cron", CRONS)
def test_the_validator_accepts_what_prefect_accepts(cron: str, record: Callable[..., None]) -> None:
    ours, prefect = _we_accept(cron), _prefect_accepts(cron)
    assert ours == prefect, f"{cron!r}: params validation {'accepts' if ours else 'refuses'}, Prefect the opposite"
    record("schedules as Prefect reads them", case=cron, agree=1, accepted=int(ours))


_FIELD = st.sampled_from(["*", "0", "1", "5", "7", "12", "31", "59", "60", "L", "5L", "W", "1W", "5#2", "MON", "JAN"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fields=st.lists(st.one_of(_FIELD, st.builds("{}/{}".format, _FIELD, _FIELD)), min_size=5, max_size=5))
def test_random_expressions_are_judged_as_prefect_judges_them(fields: list[str]) -> None:
    cron = " ".join(fields)
    assert _we_accept(cron) == _prefect_accepts(cron), cron


@pytest.mark.parametrize(
    ("zone", "valid"),
    [("UTC", True), ("Europe/Kyiv", True), ("posixrules", False), ("right/UTC", False), ("utc", False), ("", False)],
)
def test_the_timezone_is_one_prefect_accepts(zone: str, valid: bool) -> None:
    from prefect.client.schemas.schedules import CronSchedule

    try:
        CronSchedule(cron="0 3 * * 1", timezone=zone or None)
        prefect = bool(zone)
    except ValueError:
        prefect = False
    assert prefect == valid
    try:
        load_params(REPO / "params.yaml", [f"schedule.timezone={zone!r}"], root=None)
        ours = True
    except ConfigError:
        ours = False
    assert ours == valid


def test_serve_refuses_a_cron_prefect_refuses_with_exit_2_before_serving(
    tmp_path: Path, record: Callable[..., None]
) -> None:
    """`make serve` (python -m flows.deploy serve) with the issue's cron: one line, exit 2, nothing served."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(REPO / "params.yaml", project / "params.yaml")
    (project / "dvc.yaml").write_text((REPO / "dvc.yaml").read_text())
    text = (project / "params.yaml").read_text().replace('cron: "0 3 * * 1"', 'cron: "0 3 * * 5L"')
    text = text.replace("cron: 0 3 * * 1", 'cron: "0 3 * * 5L"')
    assert "5L" in text
    (project / "params.yaml").write_text(text)
    done = run_module("flows.deploy", "serve", cwd=project, code=REPO, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "schedule.cron" in done.stderr and "Prefect" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout and "serving" not in done.stdout
    record("schedules as Prefect reads them", case="make serve with 0 3 * * 5L", agree=1, accepted=0)
