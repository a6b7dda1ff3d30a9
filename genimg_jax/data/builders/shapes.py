"""`shapes`: dSprites-like procedural shapes with known generative factors, built offline.

Each 64×64×1 uint8 image shows one white shape (255) on black (0), fully determined by five
factor indices, as in dSprites: shape (square, ellipse, heart), scale (6 values in 0.5..1),
orientation (40 angles in [0, 2π)), x position and y position (32 values each in 0..1). Positions
are mapped into the image with a margin so the shape stays inside at every scale and angle;
x grows to the right and y grows downwards (the row index). Orientation turns the shape
counterclockwise as displayed. The square and the ellipse are symmetric under some rotations
(90° and 180°), so, as in dSprites, some orientations give identical images.

`render` is the pure, deterministic renderer: metrics code calls it to draw images for chosen
factors. The train and test splits draw factor indices uniformly and independently with fixed
seeds.
"""

from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds

from genimg_jax.data.builders.local_info import LocalDatasetInfo

FACTOR_NAMES = ("shape", "scale", "orientation", "x_position", "y_position")
FACTOR_SIZES = (3, 6, 40, 32, 32)  # as in dSprites
SHAPE_NAMES = ("square", "ellipse", "heart")
FACTOR_VALUES = (
    np.arange(3, dtype=np.float32),  # shape: 0 square, 1 ellipse, 2 heart
    np.linspace(0.5, 1.0, 6, dtype=np.float32),  # scale
    np.linspace(0.0, 2 * np.pi, 40, endpoint=False, dtype=np.float32),  # orientation, radians
    np.linspace(0.0, 1.0, 32, dtype=np.float32),  # x position
    np.linspace(0.0, 1.0, 32, dtype=np.float32),  # y position
)

IMAGE_SIZE = 64
SUPERSAMPLE = 3  # samples per pixel per axis (odd: no ties); a pixel is on when most are in
HALF_EXTENT = 0.15  # half the width of a shape at scale 1, as a fraction of the image width
MAX_RADIUS = np.sqrt(2.0)  # largest distance from the centre to a unit shape's edge (square)
MARGIN = HALF_EXTENT * MAX_RADIUS  # closest a centre comes to the border, as a fraction
ELLIPSE_MINOR = 0.6  # the unit ellipse's semi-axes are 1 (along x) and this (along y)
HEART_SCALE, HEART_SHIFT = 1.13, 0.118  # fit the heart curve's [-1.14, 1.14]×[-1, 1.24] to ~±1
WINDOW = int(np.ceil(2 * MARGIN * IMAGE_SIZE)) + 2  # side in pixels of the box drawn per shape
RENDER_CHUNK = 512  # images rendered at once, to bound memory

TRAIN_SIZE, TEST_SIZE = 20_000, 2_000
TRAIN_SEED, TEST_SEED = 20_240_601, 20_240_602
WRITE_CHUNK = 1_000  # examples rendered per step of the generator


def sample_factors(rng: np.random.Generator, n: int) -> np.ndarray:
    """Draws n factor-index vectors uniformly and independently: int64 [n, 5]."""
    return np.stack([rng.integers(0, size, n) for size in FACTOR_SIZES], axis=1)


def factor_values(factors: np.ndarray) -> np.ndarray:
    """The factor values of factor indices [N, 5]: float32 [N, 5]."""
    factors = np.asarray(factors)
    return np.stack([values[factors[:, k]] for k, values in enumerate(FACTOR_VALUES)], axis=1)


def _centres(values: np.ndarray) -> np.ndarray:
    """Shape centres (column, row) in pixels from factor values [N, 5]: float32 [N, 2].

    Positions 0..1 map to MARGIN..1-MARGIN of the image, so shapes stay inside at any scale/angle.
    """
    return (MARGIN + values[:, 3:] * (1 - 2 * MARGIN)) * IMAGE_SIZE


def _window_starts(centres: np.ndarray) -> np.ndarray:
    """First pixel (column, row) of the WINDOW×WINDOW box around each centre [N, 2]: int [N, 2].

    The box spans the centre ± MARGIN at least, so it holds the whole shape.
    """
    starts = np.floor(centres - WINDOW / 2).astype(np.int64)
    return np.clip(starts, 0, IMAGE_SIZE - WINDOW)


def _local_coords(
    values: np.ndarray, centres: np.ndarray, starts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Window sample points in each shape's unit frame (x right, y up): u, v [N, S, S].

    values: factor values [N, 5]; centres: [N, 2] pixels; starts: window corners [N, 2];
    S = WINDOW·SUPERSAMPLE samples per axis, at sub-pixel centres.
    """
    scale, angle = values[:, 1], values[:, 2]
    half = (HALF_EXTENT * IMAGE_SIZE * scale)[:, None]  # [N, 1], in pixels
    grid = (np.arange(WINDOW * SUPERSAMPLE, dtype=np.float32) + 0.5) / SUPERSAMPLE  # [S]
    points = starts[:, :, None] + grid - centres[:, :, None]  # [N, 2, S], in pixels
    dx = points[:, 0] / half  # [N, S], along columns
    dy = -points[:, 1] / half  # [N, S], along rows, pointing up
    cos, sin = np.cos(angle)[:, None], np.sin(angle)[:, None]  # [N, 1]
    # Rotating the shape by +angle is rotating the sample points by -angle.
    u = (dx * cos)[:, None, :] + (dy * sin)[:, :, None]  # [N, S, S]
    v = (-dx * sin)[:, None, :] + (dy * cos)[:, :, None]
    return u, v


def _inside_square(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Whether points lie in the square [-1, 1]²."""
    return np.maximum(np.abs(u), np.abs(v)) <= 1


def _inside_ellipse(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Whether points lie in the ellipse with semi-axes 1 (u) and ELLIPSE_MINOR (v)."""
    return u * u + (v * (1 / ELLIPSE_MINOR)) ** 2 <= 1


def _inside_heart(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Whether points lie in the heart (x² + y² - 1)³ ≤ x²y³, centred and scaled to about ±1."""
    x = u * HEART_SCALE
    y = v * HEART_SCALE + HEART_SHIFT
    x2, y2 = x * x, y * y
    r = x2 + y2 - 1
    return r * r * r <= x2 * y2 * y


_INSIDE = (_inside_square, _inside_ellipse, _inside_heart)  # indexed by the shape factor


def _render_chunk(factors: np.ndarray) -> np.ndarray:
    """Renders factor indices [N, 5] into uint8 images [N, 64, 64, 1]."""
    n, s, w = len(factors), SUPERSAMPLE, WINDOW
    values = factor_values(factors)  # [N, 5]
    centres = _centres(values)  # [N, 2]
    starts = _window_starts(centres)  # [N, 2]
    samples = np.zeros((n, w * s, w * s), bool)  # [N, S, S], the window around each shape
    for shape, inside in enumerate(_INSIDE):
        members = np.flatnonzero(factors[:, 0] == shape)
        if len(members):
            coords = _local_coords(values[members], centres[members], starts[members])
            samples[members] = inside(*coords)
    # Samples in each pixel: [N, w, w], summed slice by slice (10x numpy's sum over two axes).
    cells = samples.view(np.uint8).reshape(n, w, s, w, s)
    counts = sum(cells[:, :, i, :, j] for i in range(s) for j in range(s))
    images = np.zeros((n, IMAGE_SIZE, IMAGE_SIZE, 1), np.uint8)
    cols = starts[:, 0, None, None] + np.arange(w)[None, None, :]  # [N, 1, w]
    rows = starts[:, 1, None, None] + np.arange(w)[None, :, None]  # [N, w, 1]
    images[np.arange(n)[:, None, None], rows, cols, 0] = (2 * counts > s * s) * np.uint8(255)
    return images


def render(factors: np.ndarray) -> np.ndarray:
    """Renders factor indices [N, 5] into white-on-black uint8 images [N, 64, 64, 1]."""
    factors = np.asarray(factors, dtype=np.int64)
    if factors.ndim != 2 or factors.shape[1] != len(FACTOR_SIZES):
        raise ValueError(f"factors must have shape [N, {len(FACTOR_SIZES)}], got {factors.shape}")
    if ((factors < 0) | (factors >= np.array(FACTOR_SIZES))).any():
        raise ValueError(f"factor indices must lie in [0, size) for sizes {FACTOR_SIZES}")
    chunks = [
        _render_chunk(factors[i : i + RENDER_CHUNK]) for i in range(0, len(factors), RENDER_CHUNK)
    ]
    if not chunks:
        return np.zeros((0, IMAGE_SIZE, IMAGE_SIZE, 1), np.uint8)
    return np.concatenate(chunks)


class Shapes(tfds.core.GeneratorBasedBuilder):
    """dSprites-like shapes with five known generative factors; built offline."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> tfds.core.DatasetInfo:
        image = tfds.features.Tensor(
            shape=(IMAGE_SIZE, IMAGE_SIZE, 1),
            dtype=np.uint8,
            encoding=tfds.features.Encoding.ZLIB,
        )
        labels = {
            f"label_{name}": tfds.features.ClassLabel(num_classes=size)
            for name, size in zip(FACTOR_NAMES, FACTOR_SIZES)
        }
        values = {f"value_{name}": tfds.features.Scalar(dtype=np.float32) for name in FACTOR_NAMES}
        return LocalDatasetInfo(
            builder=self,
            description=(
                "dSprites-like procedural shapes (square, ellipse, heart) on a 64x64 black "
                "canvas with five known generative factors (shape, scale, orientation, x and "
                "y position), for beta-VAE training and disentanglement metrics. Generated "
                "offline with numpy; factor indices are drawn uniformly with fixed seeds."
            ),
            features=tfds.features.FeaturesDict({"image": image, **labels, **values}),
            homepage="https://github.com/google-deepmind/dsprites-dataset",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict:
        """Train and test splits, each from its own fixed seed; nothing is downloaded."""
        del dl_manager
        return {
            "train": self._generate_examples(TRAIN_SIZE, TRAIN_SEED),
            "test": self._generate_examples(TEST_SIZE, TEST_SEED),
        }

    def _generate_examples(self, n: int, seed: int) -> Iterator[tuple[int, dict]]:
        """Yields (index, example) for n factor vectors drawn with `seed`, rendered in chunks."""
        factors = sample_factors(np.random.default_rng(seed), n)  # [n, 5]
        values = factor_values(factors)  # [n, 5]
        for start in range(0, n, WRITE_CHUNK):
            images = render(factors[start : start + WRITE_CHUNK])
            for offset, image in enumerate(images):
                i = start + offset
                example = {"image": image}
                for k, name in enumerate(FACTOR_NAMES):
                    example[f"label_{name}"] = int(factors[i, k])
                    example[f"value_{name}"] = values[i, k]
                yield i, example
