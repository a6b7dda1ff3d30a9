"""Differentiable augmentation of the images D sees, real and fake alike, so that G learns
through it (GANs on little data): DiffAugment (Zhao et al. 2020, "Differentiable Augmentation
for Data-Efficient GAN Training"), the policies of their official code on images in [-1, 1]:

| policy        | per example                                                              |
|---------------|--------------------------------------------------------------------------|
| `color`       | brightness + (u − ½); saturation: (x − mean_c)·2u + mean_c; contrast:    |
|               | (x − mean)·(u + ½) + mean (three independent u ~ U[0, 1))                |
| `translation` | shift by integers in [−H/8, H/8] (each axis), zeros shifted in          |
| `cutout`      | a square of side H/2 set to 0, its centre anywhere in the image         |

`train.augment = "color,translation,cutout"` applies them in that order with the D step's
key: every draw is made for the global batch and sliced per device (`parallel.global_rows`),
so jit and pmap, and a resumed run, see the same augmentations.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp

from genimg_jax import parallel

Array = jax.Array
TRANSLATION_RATIO, CUTOUT_RATIO = 0.125, 0.5  # of the image side, as in DiffAugment's code


def _uniform(rng: Array, rows: int, axis_name: str | None) -> Array:
    """u ~ U[0, 1) per example: [rows, 1, 1, 1]."""
    draw = lambda k, n: jax.random.uniform(k, (n, 1, 1, 1))
    return parallel.global_rows(draw, rng, rows, axis_name)


def _integers(rng: Array, rows: int, low: int, high: int, axis_name: str | None) -> Array:
    """Two integers in [low, high) per example: [rows, 2]."""
    draw = lambda k, n: jax.random.randint(k, (n, 2), low, high)
    return parallel.global_rows(draw, rng, rows, axis_name)


def color(x: Array, rng: Array, axis_name: str | None = None) -> Array:
    """Brightness, saturation and contrast, each with its own u per example."""
    b, s, c = (_uniform(k, x.shape[0], axis_name) for k in jax.random.split(rng, 3))
    x = x + (b - 0.5)
    mean = jnp.mean(x, axis=3, keepdims=True)
    x = (x - mean) * (2.0 * s) + mean
    mean = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
    return (x - mean) * (c + 0.5) + mean


def shift_image(x: Array, dy: Array, dx: Array) -> Array:
    """One image [H, W, C] moved by (dy, dx) pixels, zeros shifted in."""
    h, w = x.shape[:2]
    rows, cols = jnp.arange(h) - dy, jnp.arange(w) - dx  # source pixel of each target pixel
    inside = ((rows >= 0) & (rows < h))[:, None] & ((cols >= 0) & (cols < w))[None, :]
    moved = x[jnp.clip(rows, 0, h - 1)][:, jnp.clip(cols, 0, w - 1)]
    return jnp.where(inside[..., None], moved, jnp.zeros_like(moved))


def translation(x: Array, rng: Array, axis_name: str | None = None) -> Array:
    """Integer shifts in [−s, s] per axis, s = round(H/8)."""
    s = int(x.shape[1] * TRANSLATION_RATIO + 0.5)
    shifts = _integers(rng, x.shape[0], -s, s + 1, axis_name)
    return jax.vmap(shift_image)(x, shifts[:, 0], shifts[:, 1])


def cutout(x: Array, rng: Array, axis_name: str | None = None) -> Array:
    """A square of side round(H/2) zeroed, centred at an integer position in the image."""
    h, w = x.shape[1:3]
    size = int(h * CUTOUT_RATIO + 0.5)
    centres = _integers(rng, x.shape[0], 0, h + (1 - size % 2), axis_name)  # DiffAugment's range
    top = (centres[:, 0] - size // 2)[:, None]
    left = (centres[:, 1] - size // 2)[:, None]
    in_rows = (jnp.arange(h)[None, :] >= top) & (jnp.arange(h)[None, :] < top + size)
    in_cols = (jnp.arange(w)[None, :] >= left) & (jnp.arange(w)[None, :] < left + size)
    hole = in_rows[:, :, None] & in_cols[:, None, :]  # [B, H, W]
    return jnp.where(hole[..., None], jnp.zeros_like(x), x)


POLICIES: dict[str, Callable[..., Array]] = {
    "color": color,
    "translation": translation,
    "cutout": cutout,
}


def parse_policy(text: str) -> tuple[str, ...]:
    """'color,translation' -> ('color', 'translation'); '' -> () (no augmentation)."""
    return tuple(p.strip() for p in text.split(",") if p.strip())


def diff_augment(
    x: Array, rng: Array, policy: tuple[str, ...], axis_name: str | None = None
) -> Array:
    """x [B, H, W, C] through each policy in order (each with its own key from `rng`)."""
    for i, name in enumerate(policy):
        x = POLICIES[name](x, jax.random.fold_in(rng, i), axis_name)
    return x
