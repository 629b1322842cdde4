"""The paint flow's array functions: grid, Fourier features, the tutorial's colour rule, metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from quickdraw_dag.config.paint import PaintParams
from quickdraw_dag.errors import ConfigError, DataError
from quickdraw_dag.painting import (
    class_colours,
    colour_labels,
    fourier_features,
    fourier_matrix,
    load_image,
    model_inputs,
    pixel_grid,
    psnr,
)


def test_pixel_grid_is_row_major_and_spans_minus_one_to_one() -> None:
    grid = pixel_grid(3, 4)
    assert grid.shape == (12, 2) and grid.dtype == np.float32
    assert grid[0].tolist() == [-1.0, -1.0] and grid[3].tolist() == [1.0, -1.0] and grid[-1].tolist() == [1.0, 1.0]
    assert grid[4].tolist() == [-1.0, 0.0]  # second row starts at the left edge


def test_colour_labels_follow_the_threshold_rule_exactly() -> None:
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (37, 23, 3), dtype=np.uint8)
    image[0, 0] = (200, 200, 200)  # sum 600: "blue" (≤)
    image[0, 1] = (200, 200, 201)  # sum 601: "grey"
    image[0, 2] = (255, 255, 255)  # no uint8 overflow: 765
    labels = colour_labels(image, 600)
    expected = [[int(int(r) + int(g) + int(b) <= 600) for r, g, b in row] for row in image.tolist()]
    assert labels.tolist() == expected
    assert labels[0, :3].tolist() == [1, 0, 0]
    assert colour_labels(image, 0).sum() == int((image.astype(int).sum(-1) == 0).sum())


def test_class_colours_are_each_class_mean() -> None:
    image = np.array([[[0, 0, 200], [0, 0, 100]], [[250, 250, 250], [240, 240, 240]]], np.uint8)
    labels = colour_labels(image, 600)
    assert labels.tolist() == [[1, 1], [0, 0]]
    assert class_colours(image, labels).tolist() == [[245, 245, 245], [0, 0, 150]]
    only_grey = np.full((2, 2, 3), 255, np.uint8)
    assert class_colours(only_grey, colour_labels(only_grey, 600)).tolist() == [[255] * 3, [255] * 3]


def test_fourier_features_are_seeded_sin_cos_pairs() -> None:
    grid = pixel_grid(5, 6)
    matrix = fourier_matrix(16, 10.0, seed=1)
    assert matrix.shape == (2, 16) and np.array_equal(matrix, fourier_matrix(16, 10.0, seed=1))
    assert not np.array_equal(matrix, fourier_matrix(16, 10.0, seed=2))
    assert 5.0 < matrix.std() < 15.0
    features = fourier_features(grid, matrix)
    assert features.shape == (30, 32)
    np.testing.assert_allclose(features[:, :16] ** 2 + features[:, 16:] ** 2, 1.0, atol=1e-5)
    params = PaintParams(fourier={"enabled": True, "size": 16, "scale": 10.0}, seed=1)
    np.testing.assert_array_equal(model_inputs(grid, params), features)
    assert model_inputs(grid, PaintParams()) is grid


def test_psnr_of_known_error() -> None:
    source = np.zeros((4, 4, 3), np.uint8)
    painting = np.full((4, 4, 3), 51, np.uint8)  # error 0.2 everywhere: MSE 0.04
    assert psnr(source, painting) == pytest.approx(10 * np.log10(1 / 0.04))
    assert psnr(source, source) == float("inf")


def test_load_image_downscales_composites_alpha_and_names_bad_files(tmp_path: Path) -> None:
    from PIL import Image

    rgba = np.zeros((40, 80, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:, :40, 3] = 255  # left half opaque red, right half transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "half.png")
    image = load_image(str(tmp_path / "half.png"), 20)
    assert image.shape == (10, 20, 3) and image.dtype == np.uint8
    assert image[5, 2].tolist() == [255, 0, 0] and image[5, 18].tolist() == [255, 255, 255]
    assert load_image(str(tmp_path / "half.png"), 500).shape == (40, 80, 3)  # never upscaled
    assert load_image("matplotlib:logo2.png", 50).shape[1] == 50
    with pytest.raises(ConfigError, match="no such file"):
        load_image(str(tmp_path / "missing.png"), 10)
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(DataError, match="text.png"):
        load_image(str(tmp_path / "text.png"), 10)
    with pytest.raises(ConfigError, match="no matplotlib sample"):
        load_image("matplotlib:nope.png", 10)


def test_leaky_relu_uses_the_tutorials_slope() -> None:
    from quickdraw_dag.painting import LEAKY_RELU_SLOPE, build_mlp

    model = build_mlp(2, PaintParams(hidden_layers=2, units=4, activation="leaky_relu"))
    slopes = [layer.negative_slope for layer in model.layers if type(layer).__name__ == "LeakyReLU"]
    assert slopes == [LEAKY_RELU_SLOPE, LEAKY_RELU_SLOPE] == [0.1, 0.1]  # Keras's own default is 0.2


def perceptron_and_mlp_accuracy(image: np.ndarray) -> tuple[float, float]:
    """Pixel accuracy of the tutorial's perceptron and of a small deep MLP on the colour classes of `image`."""
    import keras

    from quickdraw_dag.painting import build_mlp, predicted_classes

    inputs = pixel_grid(*image.shape[:2])
    labels = colour_labels(image, 600).ravel()
    scores = []
    for hidden in (0, 4):
        keras.utils.set_random_seed(0)
        params = PaintParams(mode="classification", hidden_layers=hidden, units=32, learning_rate=0.01)
        model = build_mlp(2, params)
        model.fit(inputs, labels.astype("float32") if hidden == 0 else labels, epochs=60, batch_size=64, verbose=0)
        scores.append(float(np.mean(predicted_classes(model.predict(inputs, verbose=0)) == labels)))
    return scores[0], scores[1]


def test_the_perceptron_paints_a_straight_boundary_and_only_that() -> None:
    from quickdraw_dag.painting import build_mlp

    perceptron = build_mlp(2, PaintParams(mode="classification", hidden_layers=0))
    assert [type(layer).__name__ for layer in perceptron.layers] == ["Dense", "LeakyReLU"]
    assert perceptron.layers[0].units == 1 and perceptron.count_params() == 3  # one neuron: w_x, w_y, bias
    ys, xs = np.mgrid[0:24, 0:24]
    half = np.where((xs + ys < 24)[..., None], [20, 30, 120], [230, 230, 230]).astype(np.uint8)  # a diagonal split
    disc = np.where(((xs - 12) ** 2 + (ys - 12) ** 2 < 40)[..., None], [20, 30, 120], [230, 230, 230]).astype(np.uint8)
    on_half, _ = perceptron_and_mlp_accuracy(half)
    on_disc, mlp_on_disc = perceptron_and_mlp_accuracy(disc)
    assert on_half > 0.93  # a line separates the classes: one neuron draws it (least squares, near the edge)
    assert on_disc < 0.85 < mlp_on_disc  # a disc needs the hidden layers
