"""`schedule.cron` and `schedule.timezone` checked by the code that will run them: Prefect's.

Prefect 3 validates a deployment's cron with its vendored croniter
(`prefect._internal.schemas.validators.validate_cron_string`) and its time
zone against `zoneinfo.available_timezones()`, and its scheduler computes
the next runs with the same croniter. Another cron library accepts other
strings (`cronsim` takes `0 3 * * 5L`, which Prefect refuses), so params
validation passed and `make serve` died with a traceback after "serving…".

Importing `prefect` costs seconds and every stage loads params, so the
vendored croniter module is loaded from Prefect's installed files on its
own; `tests/unit/test_cron.py` holds these rules to Prefect's own
`CronSchedule` on a corpus of expressions.
"""

from __future__ import annotations

import importlib.util
import sys
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from types import ModuleType
from zoneinfo import available_timezones

from quickdraw_dag.errors import excerpt

# Prefect refuses croniter's random (R) and hashed (H) fields (validate_cron_string).
_UNSUPPORTED_FIELDS = {"r", "h"}
_MODULE = "quickdraw_dag.config._prefect_croniter"


@cache
def _croniter() -> ModuleType:
    """Prefect's vendored croniter module, loaded without importing the `prefect` package."""
    spec = importlib.util.find_spec("prefect")
    if spec is None or spec.origin is None:
        raise ValueError("cannot check the cron expression: Prefect is not installed")
    path = Path(spec.origin).parent / "_vendor" / "croniter" / "croniter.py"
    module_spec = importlib.util.spec_from_file_location(_MODULE, path)
    if module_spec is None or module_spec.loader is None:
        raise ValueError(f"cannot check the cron expression: {path} is missing")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[_MODULE] = module
    module_spec.loader.exec_module(module)
    return module


def check_cron(cron: str) -> str:
    """`cron` as Prefect accepts it (5 fields) and with a next run; ValueError saying what is wrong."""
    fields = cron.split()
    if len(fields) != 5:
        raise ValueError("must have 5 fields 'minute hour day-of-month month day-of-week'")
    croniter = _croniter()
    if not croniter.croniter.is_valid(cron) or any(field.casefold() in _UNSUPPORTED_FIELDS for field in fields):
        raise ValueError(
            "Prefect's scheduler does not accept this expression "
            "(fields: numbers, ranges a-b, steps */n, lists a,b, names MON or JAN, L for the last day of the month)"
        )
    try:
        croniter.croniter(cron, datetime(2026, 1, 1, tzinfo=UTC)).get_next(datetime)
    except croniter.CroniterError as error:
        raise ValueError(f"impossible: the expression never fires ({excerpt(str(error), 80)})") from None
    return cron


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def check_timezone(zone: str) -> str:
    """An IANA zone name as Prefect's schedules accept it (one of `zoneinfo.available_timezones()`)."""
    if zone not in _zones():
        raise ValueError("unknown IANA time zone (e.g. 'UTC', 'Europe/Madrid')")
    return zone
