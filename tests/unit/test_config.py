"""params.yaml → frozen, validated config; --set overrides validated the same way."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from quickdraw_dag.config.loading import apply_override, load_params, validate_params
from quickdraw_dag.config.schema import Params
from quickdraw_dag.errors import ConfigError
from tests.helpers import REPO


@pytest.fixture()
def raw() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def test_repository_params_load_with_expected_defaults() -> None:
    params = load_params(REPO / "params.yaml")
    # The real sample that ships with every clone, and its seven categories.
    assert params.data.source == "samples/quickdraw" and (REPO / params.data.source).is_dir()
    assert params.data.categories == ("bear", "duck", "frog", "lion", "monkey", "rabbit", "sheep")
    assert params.split.fractions.as_dict() == {"train": 0.8, "val": 0.1, "test": 0.1}
    assert params.paths.raw == "data/raw"


def test_params_are_frozen() -> None:
    params = load_params(REPO / "params.yaml")
    with pytest.raises(Exception, match="frozen"):
        params.data.source = "synthetic"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("key_path", "value", "expected"),
    [
        ("split.max_per_class", "ten", "split.max_per_class"),
        ("split.max_per_class", -5, "greater than 0"),
        ("split.recognized_only", "yes", "split.recognized_only"),
        ("split.fractions.train", 1.5, "less than 1"),
        ("split.fractions.val", 0, "greater than 0"),
        ("data.on_bad_record", "ignore", "'fail' or 'skip'"),
        ("fetch.local_format", "png", "fetch.local_format"),
        ("fetch.download.timeout_s", 0, "greater than 0"),
        ("fetch.download.base_url", "ftp://x/", "http"),
        ("fetch.synthetic_drawings", 0, "fetch.synthetic_drawings"),
        ("paths.raw", "../outside", "inside the project"),
        ("paths.interim", "/tmp/abs", "inside the project"),
        ("schedule.cron", "every day", "5 fields"),
        ("schedule.cron", "0 0 31 2 *", "impossible"),
        ("schedule.timezone", "Mars/Olympus", "time zone"),
        ("schedule.enabled", "sometimes", "schedule.enabled"),
        ("data.categories", ["apple"], "at least 2"),
        ("data.categories", ["apple", "apple"], "twice"),
        ("data.categories", "apple", "data.categories"),
    ],
)
def test_invalid_values_name_the_key(raw: dict, key_path: str, value: object, expected: str) -> None:
    node = raw
    *parents, leaf = key_path.split(".")
    for part in parents:
        node = node[part]
    node[leaf] = value
    with pytest.raises(ConfigError) as error:
        validate_params(raw, "params.yaml")
    message = str(error.value)
    assert key_path.split(".")[0] in message
    assert expected in message


def test_fractions_must_sum_to_one(raw: dict) -> None:
    raw["split"]["fractions"] = {"train": 0.7, "val": 0.1, "test": 0.1}
    with pytest.raises(ConfigError, match=r"split\.fractions: .*sum to 1 \(got 0\.9\)"):
        validate_params(raw)


def test_unknown_category_suggests_the_near_miss(raw: dict) -> None:
    raw["data"]["categories"] = ["aple", "banana"]
    with pytest.raises(ConfigError) as error:
        validate_params(raw)
    assert "unknown category 'aple'" in str(error.value)
    assert "did you mean 'apple'" in str(error.value)


def test_unknown_keys_are_errors_with_a_hint(raw: dict) -> None:
    raw["split"]["fraction"] = raw["split"].pop("fractions")
    with pytest.raises(ConfigError) as error:
        validate_params(raw)
    assert "split.fraction: unknown key (did you mean 'fractions'?" in str(error.value)


def test_unknown_section_is_an_error(raw: dict) -> None:
    raw["trian"] = {"epochs": 3}
    with pytest.raises(ConfigError, match="trian: unknown key"):
        validate_params(raw)


def test_synthetic_source_accepts_only_shapes_it_draws(raw: dict) -> None:
    raw["data"]["source"] = "synthetic"
    raw["data"]["categories"] = ["circle", "cat"]
    with pytest.raises(ConfigError, match=r"synthetic source draws only .*not \['cat'\]"):
        validate_params(raw)
    raw["data"]["categories"] = ["circle", "square"]
    assert validate_params(raw).data.source_kind == "synthetic"


def test_overrides_are_parsed_as_yaml_and_validated(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text((REPO / "params.yaml").read_text())
    params = load_params(
        path,
        [
            "data.source=synthetic",
            "data.categories=[circle, square, star]",
            "split.max_per_class=500",
            "split.fractions.train=0.6",
            "split.fractions.test=0.3",
        ],
    )
    assert params.data.categories == ("circle", "square", "star")
    assert params.split.max_per_class == 500
    assert params.split.fractions.train == 0.6
    with pytest.raises(ConfigError, match="split.max_per_class"):
        load_params(path, ["split.max_per_class=lots"])


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("split.max_per_clas=3", "did you mean 'split.max_per_class'"),
        ("nonsense", "key.path=value"),
        ("=3", "key.path=value"),
        ("data.categories=[a", "not valid YAML"),
        ("split.fractions.train.x=1", "unknown key"),
    ],
)
def test_bad_overrides_are_usage_errors(override: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected.replace("[", r"\[").replace(".", r"\.")):
        apply_override({}, override)


def test_unreadable_or_invalid_yaml_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read params file"):
        load_params(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("data:\n  categories: [apple,\n")
    with pytest.raises(ConfigError, match=r"line \d+, column \d+: not valid YAML"):
        load_params(broken)


def test_model_is_the_single_source_of_defaults() -> None:
    params = Params.model_validate({"data": {"categories": ["apple", "banana"]}})
    assert params.split.seed == 0 and params.fetch.download.retries == 5


def test_retired_worker_keys_say_where_their_job_went(raw: dict) -> None:
    raw["preprocess"]["workers"] = 2
    with pytest.raises(ConfigError, match="preprocess.workers: no longer a param: set the QUICKDRAW_WORKERS"):
        validate_params(raw)
    with pytest.raises(ConfigError, match="QUICKDRAW_WORKERS"):
        apply_override(yaml.safe_load((REPO / "params.yaml").read_text()), "train.workers=2")


def test_search_space_is_the_one_declaration_of_the_builders_hyperparameters() -> None:
    import inspect

    from quickdraw_dag.config.schema import SearchSpace
    from quickdraw_dag.training.model import build_cnn

    fixed = {"image_size", "num_classes", "scaling", "augment", "seed"}
    keywords = set(inspect.signature(build_cnn).parameters) - fixed
    assert keywords == set(SearchSpace.names())
    assert SearchSpace.normalize(
        {"filters": 32.0, "batch_norm": 1, "activation": "elu", "l1": "0.001", "tuner/epochs": 3}
    ) == {"filters": 32, "batch_norm": True, "activation": "elu", "l1": 0.001}


def test_the_models_defaults_are_params_yamls() -> None:
    """A section left out of params.yaml means what params.yaml says, not something else."""
    shipped = load_params(REPO / "params.yaml")
    bare = Params(data={"categories": list(shipped.data.categories)})
    for section in ("fetch", "split", "preprocess", "tune", "train", "evaluate", "mlflow", "schedule"):
        assert getattr(bare, section) == getattr(shipped, section), section
