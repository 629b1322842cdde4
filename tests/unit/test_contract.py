"""The contract between stages, checked against the code: artifact names, imports, dvc.yaml.

- every artifact name lives in `quickdraw_dag/artifacts.py` and nowhere else;
- no stage module imports another stage module;
- each `dvc.yaml` stage lists every project module its command imports (directly or
  transitively), every params section its `run` reads, and exactly the outputs the
  catalog declares for it;
- in both pipelines: the doodle one (`dvc.yaml`, `params.yaml` at the root) and the
  paint one (its own DVC project in `paint/`);
- git ignores exactly the outputs the DVC cache keeps, so after a run `git status`
  shows what a user commits (dvc.lock, params.yaml, the small reports);
- every params section is read by a stage, or only by the flows (and then by no stage);
- the library is layered: each group imports only the groups below it (`LAYERS`), and the data
  stages (fetch, split, preprocess) import no MLflow code.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from quickdraw_dag.artifacts import PIPELINES, Catalog, PaintCatalog, Pipeline, git_tracked_outputs, stage_outputs
from quickdraw_dag.config.schema import FLOW_ONLY_SECTIONS, Params
from quickdraw_dag.tracking.record import RECORDED_SECTIONS
from tests.helpers import REPO

STAGES = tuple(stage for pipeline in PIPELINES.values() for stage in pipeline.outputs)
PIPELINE_OF: dict[str, Pipeline] = {stage: pipeline for pipeline in PIPELINES.values() for stage in pipeline.outputs}
CODE_ROOTS = ("quickdraw_dag", "tasks", "flows", "bench", "tests")
CONTRACT_MODULE = REPO / "quickdraw_dag" / "artifacts.py"


def pipeline_stages(folder: Path) -> dict[str, dict]:
    """One pipeline's dvc.yaml stages, `${paths.*}` filled in from its params.yaml as DVC resolves them.

    Outputs stay relative to the pipeline's folder (as its catalog gives them); code deps are made
    relative to the project root (`../tasks/paint.py` in paint/ is `tasks/paint.py`).
    """
    params = yaml.safe_load((REPO / folder / "params.yaml").read_text())
    text = (REPO / folder / "dvc.yaml").read_text()
    text = re.sub(r"\$\{paths\.(\w+)\}", lambda m: params["paths"][m.group(1)], text)
    stages = yaml.safe_load(text)["stages"]
    for stage in stages.values():
        stage["deps"] = [os.path.normpath(folder / dep) if isinstance(dep, str) else dep for dep in stage["deps"]]
    return stages


def dvc_stages() -> dict[str, dict]:
    """The stages of every pipeline, by name."""
    return {name: stage for pipeline in PIPELINES.values() for name, stage in pipeline_stages(pipeline.folder).items()}


def test_each_pipeline_declares_exactly_its_stages_in_a_dvc_project_of_its_own() -> None:
    for pipeline in PIPELINES.values():
        assert set(pipeline_stages(pipeline.folder)) == set(pipeline.outputs), pipeline.folder
        assert (REPO / pipeline.folder / ".dvc" / "config").is_file(), pipeline.folder  # `dvc init [--subdir]`
    assert len(STAGES) == len(set(STAGES)) and "paint" in STAGES and "paint" not in pipeline_stages(Path("."))


def entries(items: list) -> dict[str, dict]:
    """dvc.yaml list entries (a path, or a one-key mapping of path → options) by path."""
    out = {}
    for item in items or []:
        if isinstance(item, str):
            out[item] = {}
        else:
            ((path, options),) = item.items()
            out[path] = options or {}
    return out


# ----- artifact names -----


def artifact_names() -> set[str]:
    """The file and folder names the catalog gives (model.keras, metrics.json, train_images.npy, …)."""
    names = set()
    for kind in (Catalog, PaintCatalog):
        catalog = kind.under(Path("/root"))
        for name in dir(kind):
            if isinstance(getattr(kind, name), property):
                names.add(getattr(catalog, name).name)
    catalog = Catalog.under(Path("/root"))
    for split in ("train", "val", "test"):
        names |= {catalog.images(split).name, catalog.labels(split).name}
    folders = {"raw", "interim", "processed", "models", "reports", "plots", "paint", "tuner", "checkpoints"}
    return {n for n in names if n not in folders}


def test_no_artifact_name_is_spelled_outside_the_contract_module() -> None:
    names = artifact_names()
    assert {"model.keras", "metrics.json", "best_hparams.json", "history.json", "train_images.npy"} <= names
    assert "paint_metrics.json" in names
    pattern = re.compile("|".join(re.escape(n) for n in sorted(names, key=len, reverse=True)))
    found = []
    for root in CODE_ROOTS:
        for path in sorted((REPO / root).rglob("*.py")):
            if path in (CONTRACT_MODULE, Path(__file__)):  # this test names them as expectations
                continue
            for number, line in enumerate(path.read_text().splitlines(), start=1):
                for match in pattern.finditer(line):
                    found.append(f"{path.relative_to(REPO)}:{number}: {match.group(0)}")
    assert found == [], "artifact names belong in quickdraw_dag/artifacts.py:\n" + "\n".join(found)


# ----- imports -----


def module_file(name: str) -> Path | None:
    """The file of a project module (`quickdraw_dag.training.model` → quickdraw_dag/training/model.py), or None."""
    parts = name.split(".")
    if parts[0] not in ("quickdraw_dag", "tasks", "flows"):
        return None
    base = REPO.joinpath(*parts)
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def imported_modules(path: Path) -> set[str]:
    """Project modules a file imports anywhere (top level or inside functions), with their packages."""
    tree = ast.parse(path.read_text())
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            names.add(base)
            names |= {f"{base}.{alias.name}" for alias in node.names}  # `from pkg import submodule`
    with_parents = set()
    for name in names:
        parts = name.split(".")
        with_parents |= {".".join(parts[: i + 1]) for i in range(len(parts))}
    return {n for n in with_parents if module_file(n) is not None}


def import_closure(start: Path) -> set[Path]:
    """Every non-empty project file that running `start` imports."""
    seen: set[Path] = set()
    todo = [start]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        todo.extend(module_file(name) for name in imported_modules(path))
    return {p for p in seen if p.read_text().strip()}


def stage_module_imports() -> list[str]:
    bad = []
    for stage in STAGES:
        for name in imported_modules(REPO / "tasks" / f"{stage}.py"):
            if name.startswith("tasks.") and name != f"tasks.{stage}":
                bad.append(f"tasks/{stage}.py imports {name}")
    return bad


def test_no_stage_module_imports_another() -> None:
    assert stage_module_imports() == []


def code_deps_problems(stages: dict[str, dict]) -> list[str]:
    problems = []
    for stage in STAGES:
        listed = [d for d in entries(stages[stage].get("deps")) if d.split("/")[0] in ("tasks", "quickdraw_dag")]
        needed = {p.relative_to(REPO).as_posix() for p in import_closure(REPO / "tasks" / f"{stage}.py")}
        for path in sorted(needed):
            if not any(path == dep or path.startswith(dep.rstrip("/") + "/") for dep in listed):
                problems.append(f"stage {stage}: dvc.yaml deps lack {path} (imported by tasks/{stage}.py)")
        for dep in listed:
            files = (
                {p.relative_to(REPO).as_posix() for p in (REPO / dep).rglob("*.py") if p.read_text().strip()}
                if (REPO / dep).is_dir()
                else {dep}
            )
            unused = sorted(files - needed)
            if unused:
                problems.append(f"stage {stage}: dvc.yaml dep {dep} covers {unused}, which it does not import")
    return problems


def test_dvc_yaml_lists_every_module_each_stage_imports() -> None:
    assert code_deps_problems(dvc_stages()) == []


def test_the_deps_check_fails_when_a_dep_is_removed() -> None:
    stages = dvc_stages()
    stages["train"]["deps"] = [d for d in stages["train"]["deps"] if d != "quickdraw_dag/training/callbacks.py"]
    assert (
        "stage train: dvc.yaml deps lack quickdraw_dag/training/callbacks.py (imported by tasks/train.py)"
        in code_deps_problems(stages)
    )


# ----- layers -----

# Each library group, with the groups it may import besides itself: lower layers never import higher ones.
# `errors` and `artifacts` are modules at the top of the package; the rest are folders.
_BASE = {"errors", "config", "runtime"}
LAYERS: dict[str, set[str]] = {
    "errors": set(),
    "config": {"errors"},
    "runtime": {"errors", "config"},
    "artifacts": _BASE,
    "data": _BASE | {"artifacts"},
    "training": _BASE | {"artifacts", "data"},
    "painting": _BASE | {"artifacts", "data", "training"},
    "tracking": _BASE | {"artifacts", "data", "training"},
    "serving": _BASE | {"artifacts", "data", "training", "tracking"},
    "orchestration": _BASE | {"artifacts", "data", "training", "tracking"},
}
DATA_STAGES = ("fetch", "split", "preprocess")


def group_of(path: Path) -> str | None:
    """The library group of a project file (quickdraw_dag/tracking/store.py → tracking), or None outside it."""
    parts = path.relative_to(REPO).with_suffix("").parts
    if parts[0] != "quickdraw_dag" or len(parts) < 2 or parts[1] == "__init__":
        return None
    return parts[1]


def library_imports() -> dict[Path, set[Path]]:
    """Each library file, with the project files it imports."""
    imports = {}
    for path in sorted((REPO / "quickdraw_dag").rglob("*.py")):
        imports[path] = {module_file(name) for name in imported_modules(path)} - {None}
    return imports


def layer_problems(imports: dict[Path, set[Path]]) -> list[str]:
    problems = []
    for path, targets in imports.items():
        group = group_of(path)
        for target in sorted(targets):
            other = group_of(target)
            if group and other and other != group and other not in LAYERS[group]:
                problems.append(f"{path.relative_to(REPO)} ({group}) imports {target.relative_to(REPO)} ({other})")
    return problems


def test_every_library_group_is_in_a_layer() -> None:
    groups = {group_of(path) for path in (REPO / "quickdraw_dag").rglob("*.py")} - {None}
    assert groups == set(LAYERS)
    assert len(list((REPO / "quickdraw_dag").iterdir())) <= 12  # a top level a newcomer reads at a glance


def test_library_groups_import_only_the_layers_below_them() -> None:
    assert layer_problems(library_imports()) == []


def test_the_layer_check_fails_when_a_lower_group_imports_a_higher_one() -> None:
    imports = library_imports()
    download = REPO / "quickdraw_dag" / "data" / "download.py"
    imports[download] = imports[download] | {REPO / "quickdraw_dag" / "tracking" / "store.py"}
    assert layer_problems(imports) == [
        "quickdraw_dag/data/download.py (data) imports quickdraw_dag/tracking/store.py (tracking)"
    ]


def imports_mlflow(path: Path) -> bool:
    return any(name == "mlflow" or name.startswith("mlflow.") for name in all_imported_names(path))


def all_imported_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("stage", DATA_STAGES)
def test_the_data_stages_import_no_mlflow_code(stage: str) -> None:
    closure = import_closure(REPO / "tasks" / f"{stage}.py")
    assert [p.relative_to(REPO).as_posix() for p in sorted(closure) if imports_mlflow(p)] == []
    assert REPO / "quickdraw_dag" / "tracking" / "store.py" not in closure  # where MLflow's store is configured
    assert imports_mlflow(REPO / "quickdraw_dag" / "tracking" / "store.py")  # the check sees lazy imports


# ----- params -----


def params_read_by_run(stage: str) -> set[str]:
    """`params.<section>[.<key>]` chains used in the stage's `run(params)`."""
    tree = ast.parse((REPO / "tasks" / f"{stage}.py").read_text())
    run = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "run")
    keys = set()
    for node in ast.walk(run):
        chain = []
        while isinstance(node, ast.Attribute):
            chain.insert(0, node.attr)
            node = node.value
        if isinstance(node, ast.Name) and node.id == "params" and chain:
            keys.add(".".join(chain[:2]) if chain[0] == "paths" else chain[0])
    if "PipelineRun.of(params)" in ast.unparse(run):  # the sections a run's MLflow record holds, declared once
        keys |= set(RECORDED_SECTIONS)
    # attribute chains nested in longer ones (params.paths inside params.paths.raw) are implied by them
    return {k for k in keys if not any(o != k and o.startswith(k + ".") for o in keys)}


def params_problems(stages: dict[str, dict]) -> list[str]:
    problems = []
    for stage in STAGES:
        listed = list(entries(stages[stage].get("params")))
        read = params_read_by_run(stage)
        for key in sorted(read):
            if not any(key == entry or key.startswith(entry + ".") for entry in listed):
                problems.append(f"stage {stage}: reads params '{key}' but dvc.yaml lists only {listed}")
        for entry in listed:
            if not any(key == entry or key.startswith(entry + ".") or entry.startswith(key + ".") for key in read):
                problems.append(f"stage {stage}: dvc.yaml lists params '{entry}', which its run() never reads")
    return problems


def test_dvc_yaml_lists_every_params_section_each_stage_reads() -> None:
    assert all(params_read_by_run(stage) for stage in STAGES)
    assert {"data", "train", "tune", "mlflow"} <= params_read_by_run("evaluate")  # its MLflow record holds them
    assert params_problems(dvc_stages()) == []


def test_the_params_check_fails_when_a_section_is_removed() -> None:
    stages = dvc_stages()
    stages["evaluate"]["params"] = [p for p in stages["evaluate"]["params"] if p != "mlflow"]
    assert any(p.startswith("stage evaluate: reads params 'mlflow'") for p in params_problems(stages))


# ----- outputs -----


@pytest.mark.parametrize("stage", STAGES)
def test_dvc_yaml_outputs_are_the_catalogs(stage: str) -> None:
    pipeline = PIPELINE_OF[stage]
    params = yaml.safe_load((REPO / pipeline.folder / "params.yaml").read_text())
    catalog = pipeline.catalog.from_paths(type("Paths", (), params["paths"]))
    declared = pipeline_stages(pipeline.folder)[stage]
    got = {kind: entries(declared.get(kind)) for kind in ("outs", "metrics", "plots")}
    expected: dict[str, dict[str, dict]] = {"outs": {}, "metrics": {}, "plots": {}}
    for path, output in stage_outputs(catalog, stage):
        options = {}
        if not output.cache:
            options["cache"] = False
        if output.persist:
            options["persist"] = True
        expected[output.kind][path.as_posix()] = options
    for kind in expected:
        assert set(got[kind]) == set(expected[kind]), (stage, kind)
        for path, options in expected[kind].items():
            for key, value in options.items():
                assert got[kind][path].get(key) == value, (stage, path, key)
            assert got[kind][path].get("cache", True) == options.get("cache", True), (stage, path, "cache")
    assert any(expected.values())


def ignored_by_git(path: Path) -> bool:
    """Whether git ignores the output at `path` (a directory output: the files in it)."""
    check = lambda p: subprocess.run(["git", "check-ignore", "-q", "--no-index", p], cwd=REPO).returncode == 0
    return check(path.as_posix()) or check((path / "any-file").as_posix())


@pytest.mark.parametrize("stage", STAGES)
def test_git_ignores_exactly_the_outputs_in_the_dvc_cache(stage: str) -> None:
    pipeline = PIPELINE_OF[stage]
    params = yaml.safe_load((REPO / pipeline.folder / "params.yaml").read_text())
    catalog = pipeline.catalog.from_paths(type("Paths", (), params["paths"]))
    for path, output in stage_outputs(catalog, stage):
        assert ignored_by_git(pipeline.folder / path) == output.cache, (stage, path.as_posix(), output.cache)


def test_git_keeps_the_small_reports_and_ignores_data_models_and_images() -> None:
    kept = {path.as_posix() for path in git_tracked_outputs(Catalog.under(Path(".")))}
    assert {"reports/metrics.json", "reports/training_log.csv", "reports/per_class.csv"} <= kept
    assert not kept & {"reports/predictions.csv", "reports/plots", "models/model.keras", "data/processed"}
    assert ignored_by_git(Path("reports/plots")) and not ignored_by_git(Path("reports/history.json"))


def test_every_params_section_is_read_by_a_stage_or_by_the_flows_only() -> None:
    listed = {entry.split(".")[0] for stage in dvc_stages().values() for entry in entries(stage.get("params"))}
    sections = set(Params.model_fields)
    assert set(FLOW_ONLY_SECTIONS) == sections - listed  # e.g. versioning: changing it reruns nothing
    assert {"versioning", "schedule"} <= set(FLOW_ONLY_SECTIONS)
