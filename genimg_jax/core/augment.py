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
key: every draw is made for the global batch and sliced per device (`collectives.global_rows`),
so jit and pmap, and a resumed run, see the same augmentations.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp

from genimg_jax.core import collectives

Array = jax.Array
TRANSLATION_RATIO, CUTOUT_RATIO = 0.125, 0.5  # of the image side, as in DiffAugment's code


def _uniform(rng: Array, rows: int, axis_name: str | None) -> Array:
    """u ~ U[0, 1) per example: [rows, 1, 1, 1]."""
    draw = lambda k, n: jax.random.uniform(k, (n, 1, 1, 1))
    return collectives.global_rows(draw, rng, rows, axis_name)


def _integers(rng: Array, rows: int, low: int, high: int, axis_name: str | None) -> Array:
    """Two integers in [low, high) per example: [rows, 2]."""
    draw = lambda k, n: jax.random.randint(k, (n, 2), low, high)
    return collectives.global_rows(draw, rng, rows, axis_name)


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


# --------------------------------------------------------------------------------------------
# ADA (Karras et al. 2020, "Training Generative Adversarial Networks with Limited Data"): each
# transformation of the chosen groups is applied to an example with probability p, p kept in
# D's state and steered so that E[sign(D(real))] stays near a target (`ada_update`).
#
# | group   | transformations (each with probability p, parameters as in the paper)          |
# |---------|--------------------------------------------------------------------------------|
# | `blit`  | x-flip; rotation by a multiple of 90°; integer translation, ±1/8 of the side   |
# | `geom`  | isotropic scale lognormal(0, (0.2 ln 2)²); rotation U(−π, π); anisotropic      |
# |         | scale lognormal(0, (0.2 ln 2)²); fractional translation N(0, (1/8)²) of the side |
#
# They compose into one affine map per example, sampled bilinearly with reflected borders (an
# example that drew no transformation is returned as it was).

ADA_GROUPS = ("blit", "geom")
SCALE_STD = 0.2 * 0.6931471805599453  # 0.2·ln 2
TRANSLATE_STD = 0.125


def _rotation(theta: Array) -> Array:
    c, s = jnp.cos(theta), jnp.sin(theta)
    z, o = jnp.zeros_like(theta), jnp.ones_like(theta)
    return jnp.stack(
        [jnp.stack([c, -s, z], -1), jnp.stack([s, c, z], -1), jnp.stack([z, z, o], -1)], -2
    )


def _scale(sx: Array, sy: Array) -> Array:
    z, o = jnp.zeros_like(sx), jnp.ones_like(sx)
    return jnp.stack(
        [jnp.stack([sx, z, z], -1), jnp.stack([z, sy, z], -1), jnp.stack([z, z, o], -1)], -2
    )


def _translate(tx: Array, ty: Array) -> Array:
    z, o = jnp.zeros_like(tx), jnp.ones_like(tx)
    return jnp.stack(
        [jnp.stack([o, z, tx], -1), jnp.stack([z, o, ty], -1), jnp.stack([z, z, o], -1)], -2
    )


def ada_matrices(
    rng: Array, rows: int, p: Array, groups: tuple[str, ...], size: int, axis_name=None
) -> Array:
    """The affine maps [rows, 3, 3] of output to input pixel coordinates (centred on the image),
    each transformation of `groups` kept with probability p per example."""
    keys = iter(jax.random.split(rng, 16))

    def draw(fn):
        return collectives.global_rows(fn, next(keys), rows, axis_name)

    def chosen():
        return draw(lambda k, n: jax.random.uniform(k, (n,))) < p

    eye = jnp.broadcast_to(jnp.eye(3), (rows, 3, 3))
    m = eye

    def then(transform, keep):  # m ← m · (transform where kept)
        nonlocal m
        m = m @ jnp.where(keep[:, None, None], transform, eye)

    if "blit" in groups:
        flip = jnp.where(draw(lambda k, n: jax.random.bernoulli(k, 0.5, (n,))), -1.0, 1.0)
        then(_scale(flip, jnp.ones(rows)), chosen())
        quarter = draw(lambda k, n: jax.random.randint(k, (n,), 0, 4)).astype(jnp.float32)
        then(_rotation(quarter * (jnp.pi / 2)), chosen())
        shift = draw(lambda k, n: jax.random.randint(k, (n, 2), -(size // 8), size // 8 + 1))
        then(_translate(*shift.astype(jnp.float32).T), chosen())
    if "geom" in groups:
        s = jnp.exp(draw(lambda k, n: jax.random.normal(k, (n,))) * SCALE_STD)
        then(_scale(s, s), chosen())
        theta = draw(lambda k, n: jax.random.uniform(k, (n,), minval=-jnp.pi, maxval=jnp.pi))
        then(_rotation(theta), chosen())
        a = jnp.exp(draw(lambda k, n: jax.random.normal(k, (n,))) * SCALE_STD)
        then(_scale(a, 1.0 / a), chosen())
        t = draw(lambda k, n: jax.random.normal(k, (n, 2))) * TRANSLATE_STD * size
        then(_translate(*t.T), chosen())
    return m


def _reflect(u: Array, n: int) -> Array:
    """Coordinates folded into [0, n − 1] by reflection at the borders."""
    period = 2.0 * (n - 1)
    u = jnp.mod(u, period)
    return jnp.where(u > n - 1, period - u, u)


def warp(image: Array, matrix: Array) -> Array:
    """One image [H, W, C] resampled at `matrix` · (output pixel centred coordinates),
    bilinearly, borders reflected."""
    h, w = image.shape[:2]
    ys, xs = jnp.meshgrid(
        jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij"
    )
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    out = jnp.stack([xs - cx, ys - cy, jnp.ones_like(xs)], -1) @ matrix.T  # [H, W, 3]
    x, y = _reflect(out[..., 0] + cx, w), _reflect(out[..., 1] + cy, h)
    x0, y0 = jnp.floor(x), jnp.floor(y)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    x0, y0 = x0.astype(jnp.int32), y0.astype(jnp.int32)
    x1, y1 = jnp.minimum(x0 + 1, w - 1), jnp.minimum(y0 + 1, h - 1)
    top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
    bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def ada_augment(
    x: Array, rng: Array, p: Array, groups: tuple[str, ...], axis_name: str | None = None
) -> Array:
    """x [B, H, W, C] through ADA's `groups` at probability p (see above)."""
    matrices = ada_matrices(rng, x.shape[0], p, groups, x.shape[1], axis_name)
    identity = jnp.all(matrices == jnp.eye(3), axis=(1, 2))
    warped = jax.vmap(warp)(x, matrices)
    return jnp.where(identity[:, None, None, None], x, warped)


def ada_update(p: Array, real_signs: Array, target: float, images: int, kimg: float) -> Array:
    """p after a D step on `images` real images whose D outputs had mean sign `real_signs`
    (the overfitting heuristic r_t): up when r_t > target, down otherwise, by images /
    (kimg·1000) (so p can cross [0, 1] in `kimg` thousand images), clipped to [0, 1]."""
    step = images / (kimg * 1000.0)
    return jnp.clip(p + jnp.sign(real_signs - target) * step, 0.0, 1.0)
