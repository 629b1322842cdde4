"""docs/RELIABILITY.md: run the reliability tests and tabulate what they measured.

    python -m bench.reliability [--out docs/RELIABILITY.md]      (make reliability)

Runs tests/reliability/ and the kill-and-resume tests of tune and train with
QUICKDRAW_RELIABILITY_LOG set, so each test appends its figures (faults
injected, files corrupted, inputs fuzzed, crashes, torn outputs, runs left
RUNNING); then tries a dependency audit (pip-audit; its vulnerability data
needs pypi.org's JSON API or api.osv.dev). Prints the table and writes it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TESTS = [
    "tests/reliability",
    "tests/integration/test_ml_stages.py::test_killed_training_resumes_at_its_last_finished_epoch",
    "tests/integration/test_ml_stages.py::test_killed_search_resumes_without_repeating_finished_trials",
]


def run_tests(log: Path, junit: Path) -> tuple[int, float]:
    env = {**os.environ, "QUICKDRAW_RELIABILITY_LOG": str(log)}
    started = time.perf_counter()
    done = subprocess.run(
        # Two xdist workers, as `make test` runs them: each figure is one appended JSON line (atomic).
        [sys.executable, "-m", "pytest", "-q", "-n", "2", "-p", "no:cacheprovider", f"--junitxml={junit}", *TESTS],
        cwd=REPO,
        env=env,
    )
    return done.returncode, time.perf_counter() - started


def test_outcomes(junit: Path) -> dict[str, int]:
    root = ElementTree.parse(junit).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    return {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}


def audit() -> str:
    """pip-audit of requirements.lock, or why it could not run here."""
    command = [
        sys.executable,
        "-m",
        "pip_audit",
        "-r",
        str(REPO / "requirements.lock"),
        "--no-deps",
        "--progress-spinner",
        "off",
        "-f",
        "json",
        "--timeout",
        "15",
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"not run ({error})"
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return f"not run: {last[:200]}"
    dependencies = report.get("dependencies", [])
    audited = [d for d in dependencies if "skip_reason" not in d]
    findings = [
        f"{d['name']} {d['version']}: {v['id']} (fixed in {', '.join(v.get('fix_versions', [])) or 'no release'})"
        for d in audited
        for v in d.get("vulns", [])
    ]
    if not audited:
        reason = next((d["skip_reason"] for d in dependencies if "skip_reason" in d), "no data")
        return (
            f"vulnerability data unreachable from this machine: 0 of {len(dependencies)} packages audited "
            f'(pip-audit: "{reason}"); run `make reliability` where pypi.org or api.osv.dev is reachable'
        )
    return f"{len(audited)} packages audited, {len(findings)} finding(s)" + ("".join(f"<br>{f}" for f in findings))


def table(rows: list[dict], outcomes: dict[str, int], audit_result: str, seconds: float) -> str:
    families: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        families[row["family"]].append(row)
    lines = ["| family | what was done | figures | corrupt / crashes / torn / left RUNNING |", "|---|---|---|---|"]
    faults = families.get("download faults", [])
    if faults:
        r = faults[0]
        lines.append(
            f"| download faults | {r['faults_injected']} faults injected over {r['categories']} categories "
            "(drops at random offsets, 500, 503, slower than the timeout, short Content-Length, HTML with 200) "
            f"| {r['files_ok']} files byte-identical to the served ones (sha256); {r['failed_cleanly']} categories "
            f"with more faults than retries failed with a clear error and no file | {r['files_corrupted']} corrupt files |"
        )
    fuzz = families.get("parser fuzzing", [])
    if fuzz:
        r = fuzz[0]
        lines.append(
            f"| parser fuzzing | {r['inputs_fuzzed']} random and mutated inputs over binary, simplified, raw, "
            f"numpy_bitmap; a 100-byte file declaring 65,535 × 65,535 points | {r['data_errors']} DataErrors naming "
            f"the file, {r['parsed_ok']} parsed as valid; slowest input {r['slowest_input_s']} s | "
            f"{r['crashes']} crashes outside DataError |"
        )
    params = families.get("invalid params", [])
    if params:
        total = sum(r["variants"] for r in params)
        lines.append(
            f"| invalid params | {total} invalid params.yaml variants and overrides (types, unknown keys and "
            "categories, fractions, negative sizes, impossible schedules, path traversal, unreadable paths) | "
            f"{sum(r['exit_2'] for r in params)} exit with code 2, {sum(r['key_named'] for r in params)} name the key | "
            f"{sum(r['outputs_touched'] for r in params)} runs touched an output |"
        )
    for r in sorted(
        families.get("kill and resume", []),
        key=lambda r: ["download", "preprocess", "tune", "train", "evaluate"].index(r["stage"]),
    ):
        left = r.get("runs_left_running", 0)
        lines.append(
            f"| kill and resume: {r['stage']} | SIGKILL mid-{r['stage']}, then rerun | {r['detail']} | "
            f"0 torn outputs{f', {left} runs left RUNNING' if 'runs_left_running' in r else ''} |"
        )
    for r in families.get("concurrency", []):
        extra = f", {r['reads_while_writing']} reads while writing" if "reads_while_writing" in r else ""
        refused = f", {r['refused']} refused naming the holder's pid and command" if r["refused"] else ""
        lines.append(
            f"| concurrency | {r['scenario']} | {r['completed']} of {r['runs']} completed{refused}{extra} | "
            f"{r['torn_outputs']} torn outputs |"
        )
    for r in families.get("security", []):
        lines.append(f"| security | {r['check']} | {r['sites']} sites checked | {r['violations']} violations |")
    lines += issue_12_rows(families)
    lines += params_and_services_rows(families)
    lines += serving_rows(families)
    lines.append(f"| dependency audit | pip-audit of requirements.lock | {audit_result} | – |")
    summary = (
        f"{outcomes['tests']} tests, {outcomes['failures']} failures, {outcomes['errors']} errors, "
        f"{outcomes['skipped']} skipped, in {seconds:.0f} s"
    )
    return "\n".join(lines) + f"\n\nTests: {summary}.\n"


def issue_12_rows(families: dict[str, list[dict]]) -> list[str]:
    """Paths, DVC beside the flow, torn checkpoints, full disks, hostile YAML, degenerate data, signals, costs."""
    lines = []
    paths = families.get("path safety", [])
    if paths:
        hostile = [r for r in paths if r["exit_2"]]
        lines.append(
            f"| path safety | {len(hostile)} hostile `paths.*` values through stages and the flow (the project root, "
            "`.git`, `.dvc`, source, samples, the MLflow store, overlapping outputs, symlinks out and to `.git`) and "
            f"{len(paths) - len(hostile)} clean-ups beside foreign files | {len(hostile)} exit 2 naming the key, "
            "before anything is written or saved into params.yaml; stages removed only files they wrote | "
            f"{sum(r['files_changed'] for r in paths)} files of the project or outside it changed |"
        )
    for r in families.get("dvc and the flow", []):
        lines.append(
            f"| DVC and the flow | {r['scenario']} | {r['refused']} refused before touching anything | "
            f"{r['outputs_touched']} outputs touched |"
        )
    for r in families.get("torn checkpoints", []):
        lines.append(f"| torn checkpoints | {r['scenario']} | {r['detail']} | 0 stuck reruns |")
    for r in families.get("full disk", []):
        lines.append(f"| full disk | {r['stage']} on a small tmpfs | {r['detail']} | {r['torn']} temporaries left |")
    hostile = families.get("hostile params", [])
    if hostile:
        lines.append(
            f"| hostile params | {len(hostile)} params files and `--set` values (an alias bomb, 20,000 nested `[`, "
            "non-UTF-8, NUL and control characters, duplicate keys, 5,000-digit numbers, 1 MB files) | "
            f"{sum(r['exit_2'] for r in hostile)} exit 2 naming the line or key; longest message "
            f"{max(r['message_chars'] for r in hostile)} characters, peak memory at most "
            f"{max(r['peak_mb'] for r in hostile)} MB | 0 tracebacks |"
        )
    degenerate = families.get("degenerate data", [])
    if degenerate:
        cases = "; ".join(f"{r['case']} ({r['stage']})" for r in degenerate)
        lines.append(
            f"| degenerate data | {cases} | {sum(r['exit_2'] for r in degenerate)} exit 2 naming the class and "
            "the counts | 0 models trained on them |"
        )
    for r in families.get("signals", []):
        figures = f"exit {r['exit_code']}" + (f" after {r['seconds']} s" if "seconds" in r else "")
        if "runs_killed" in r:
            figures += f", {r['runs_killed']} MLflow run(s) marked KILLED"
        lines.append(f"| signals | {r['scenario']} | {figures} | {r.get('servers_left', 0)} Prefect servers left |")
    clear = families.get("clear errors", [])
    if clear:
        refused = sum(r["exit_2"] for r in clear)
        lines.append(
            f"| clear errors | {'; '.join(r['case'] for r in clear)} | {refused} exit 2 with a message naming the "
            f"key or file; {len(clear) - refused} (the MLflow store race) now simply succeed | 0 tracebacks |"
        )
    for r in families.get("simplification cost", []):
        lines.append(f"| cost bounded by size | raw simplification, ndjson line length | {r['detail']} | – |")
    return lines


def serving_rows(families: dict[str, list[dict]]) -> list[str]:
    """Issue 25's servers (origins, framing, values, sizes, connections) and the champion gate."""
    lines = []
    for r in families.get("server requests", []):
        if "peak_threads" in r:
            figures = (
                f"peak {r['peak_threads']} threads; {r['503']} answered 503 at once, {r['closed']} closed, "
                f"{r['waiting']} held until their timeout"
            )
        elif "cpu_s" in r:
            figures = f"answered in {r['cpu_s']} s of CPU"
        else:
            figures = f"{r['refused']} of {r['cases']} refused with a one-line 4xx (or exit 2)"
        lines.append(f"| server requests | {r['check']} | {figures} | 0 tracebacks, 0 files written |")
    for r in families.get("champion gate", []):
        extra = (
            f" ({r['promoted_in_turn']} with the worse promoted first, then replaced)"
            if "promoted_in_turn" in r
            else ""
        )
        lines.append(
            f"| champion gate | {r['check']} | {r['cases']} cases compared on the same drawings{extra} | "
            f"{r['wrong_promotions']} worse models crowned |"
        )
    return lines


def params_and_services_rows(families: dict[str, list[dict]]) -> list[str]:
    """Issue 25's params, schedules, secrets, resource bounds, services, foreign state, processes, telemetry."""
    lines = []
    trips = families.get("params round trip", [])
    if trips:
        kinds = defaultdict(int)
        for r in trips:
            kinds[r["kind"]] += 1
        kept = sum(r["same"] for r in trips)
        lines.append(
            f"| params round trip | `--set` → params.yaml → load, in YAML 1.2 as DVC reads it: {kinds['drawn']} "
            f"values drawn over every leaf param of both pipelines, {kinds['edge']} edge values (1e-05, `yes`, "
            f"`on`, octal, line separators), {kinds['documented']} commands from README and docs/ | {kept} read "
            f"back unchanged, by the loader and by DVC; {kinds['refused']} values that read differently in "
            "YAML 1.1 refused naming the key | 0 workspaces bricked |"
        )
    schedules = families.get("schedules as Prefect reads them", [])
    if schedules:
        lines.append(
            f"| schedules | {len(schedules)} cron expressions (`5L`, `W`, `#`, `L`, impossible dates, hashed, six "
            f"fields) judged by params validation and by Prefect's CronSchedule, and `make serve` with `0 3 * * 5L` "
            f"| {sum(r['agree'] for r in schedules)} verdicts agree, {sum(r['accepted'] for r in schedules)} accepted; "
            "the rest exit 2 before serving | 0 tracebacks |"
        )
    secrets = families.get("secrets", [])
    if secrets:
        scanned = max(r["files_scanned"] for r in secrets)
        lines.append(
            f"| secrets | {sum(r['exit_2'] for r in secrets)} download and tracking URLs with a credential "
            f"(user:password@, a token or signature in the query) refused; a whole flow run downloading with a "
            f"token from `QUICKDRAW_DOWNLOAD_AUTH` | every file the run left scanned ({scanned}: workspace, "
            f"dvc.lock, DVC cache, MLflow store and artifacts, Prefect home) | {sum(r['leaks'] for r in secrets)} "
            "files holding the token |"
        )
    for r in families.get("bounded resources", []):
        lines.append(
            f"| bounded resources | {r['case']} | stopped at {r['bound']} within {r['stopped_within_s']} s, "
            f"with a message naming the bound | {r['left_behind']} partial files or processes left |"
        )
    for r in families.get("dead services", []):
        if "stopped_within_s" in r:  # the server died during the run
            lines.append(
                f"| dead services | {r['case']} | the flow stopped {r['stopped_within_s']} s after, exit 1, saying so "
                f"| {r['left_running']} processes left |"
            )
            continue
        lines.append(
            f"| dead services | {r['case']} | exit 2 in {r['seconds']} s with one line naming the service and URL "
            f"| {r['written']} files written (params.yaml untouched) |"
        )
    for r in families.get("foreign state", []):
        lines.append(
            f"| foreign state | {r['case']} | its worktree and staged files intact | {r['others_lost']} lost |"
        )
    for r in families.get("orphan processes", []):
        lines.append(
            f"| orphan processes | {r['case']} | {r['workers']} workers gone within {r['gone_within_s']} s "
            f"| {r['left']} left |"
        )
    for r in families.get("telemetry", []):
        lines.append(
            f"| telemetry | {r['case']} | analytics, DO_NOT_TRACK and MLflow telemetry off in the server's "
            f"environment (/proc) | {r['telemetry_on']} servers with telemetry on |"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "docs" / "RELIABILITY.md"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        log, junit = Path(scratch) / "figures.jsonl", Path(scratch) / "junit.xml"
        log.touch()
        code, seconds = run_tests(log, junit)
        rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        outcomes = test_outcomes(junit)
    report = table(rows, outcomes, audit(), seconds)
    header = (REPO / "docs" / "RELIABILITY.head.md").read_text()
    text = header.replace("{date}", time.strftime("%Y-%m-%d")) + "\n" + report
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(f".{out.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, out)
    print(report)
    print(f"written to {out}")
    return code


if __name__ == "__main__":
    sys.exit(main())
