"""Pure GAN step functions: (GANState, batch, rng) -> (GANState, metrics).

`axis_name` is None under `jax.jit` (the batch is global) and the pmap axis under `jax.pmap`
(the batch is one device's rows); see `genimg_jax.parallel`. Every random draw (latents, fake
labels, interpolation weights) is made for the global batch and sliced per device, so jit and
pmap give the same numbers.

D's `batch_stats` (spectral norm's power-iteration state, when D has one) advance in the D step
only; the G step reads them and leaves D, parameters and statistics, untouched.

For little data: D can see every image, real and fake, through ADA's transformations at the
probability p that D's `hparams["ada_p"]` holds and each D step steers (`ada_groups`,
`ada_target`, `ada_kimg`) and through DiffAugment (`augment`; see `genimg_jax.augment`; G
learns through both); LeCam's regulariser (`lecam_weight`) keeps D's
outputs near EMA anchors of the other side's, held in D's `hparams`; R1 can be lazy
(`r1_interval` = N: on every N-th D step only, times N, as StyleGAN2).
"""

import os
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from genimg_jax.core import augment as augment_lib
from genimg_jax.core import losses
from genimg_jax.core.losses import GANLoss
from genimg_jax.core.state import GANState, TrainState, skipped_updates
from genimg_jax.models.common import model_inputs
from genimg_jax.runtime import parallel

Batch = dict[str, jax.Array]  # {"image": [B, H, W, C] in [-1, 1], "label": int32 [B], ...}
# fold_in salts: fake labels, penalty noise, augmentation of real and fake (z uses rng itself)
LABELS_SALT, PENALTY_SALT, REAL_AUGMENT_SALT, FAKE_AUGMENT_SALT = 1, 2, 3, 4
ADA_SALT = 5  # folded into the augmentation keys for ADA's draws
# G's own randomness (StyleGAN2: per-layer noise, style mixing) and the path-length probe
NOISE_SALT, MIXING_SALT, PATH_LENGTH_SALT = 6, 7, 8


def _augmented(x, rng, d: TrainState, augment: tuple, ada_groups: tuple, axis_name):
    """x as D sees it: ADA's groups at D's probability p, then DiffAugment's policies."""
    if ada_groups:
        p = jax.lax.stop_gradient(d.hparams["ada_p"])
        x = augment_lib.ada_augment(x, jax.random.fold_in(rng, ADA_SALT), p, ada_groups, axis_name)
    return augment_lib.diff_augment(x, rng, augment, axis_name)


def _latents(rng: jax.Array, batch: Batch, latent_dim: int, axis_name: str | None) -> jax.Array:
    """z ~ N(0, I): [B, Z], this device's rows of the global batch's latents."""
    return parallel.normal_rows(rng, batch["image"].shape[0], (latent_dim,), axis_name)


def _fake_labels(
    rng: jax.Array, batch: Batch, num_classes: int, axis_name: str | None
) -> jax.Array | None:
    """Classes for G's samples, uniform per example: int32 [B] (this device's rows of one global
    draw); None when unconditional."""
    if num_classes <= 0:
        return None
    draw = lambda key, n: jax.random.randint(key, (n,), 0, num_classes, dtype=jnp.int32)
    rng = jax.random.fold_in(rng, LABELS_SALT)
    return parallel.global_rows(draw, rng, batch["image"].shape[0], axis_name)


def _real_labels(batch: Batch, num_classes: int) -> jax.Array | None:
    """The batch's labels (int32 [B]) for a conditional model; None when unconditional."""
    if num_classes <= 0:
        return None
    if "label" not in batch:
        raise ValueError(
            f"model.num_classes={num_classes} needs labelled data, but the batch has only "
            f"{sorted(batch)}; use a data set with a 'label' feature or set model.num_classes=0"
        )
    return batch["label"].astype(jnp.int32)


def _g_rngs(rng: jax.Array) -> dict[str, jax.Array]:
    """The rngs G may draw from while training: `noise` and `style_mixing` (StyleGAN2's G;
    the other Gs draw nothing)."""
    return {
        "noise": jax.random.fold_in(rng, NOISE_SALT),
        "style_mixing": jax.random.fold_in(rng, MIXING_SALT),
    }


def _generate(
    g: TrainState, params, z: jax.Array, labels: jax.Array | None, rng: jax.Array
) -> tuple[jax.Array, dict]:
    """G(z[, y]) in training mode (batch statistics, G's randomness from `rng`), and G's updated
    statistics (BatchNorm's; StyleGAN2's w_avg)."""
    fake, updates = g.apply_fn(
        g.variables(params),
        *model_inputs(z, labels),
        train=True,
        rngs=_g_rngs(rng),
        mutable=["batch_stats"],
    )
    return fake, updates.get("batch_stats", g.batch_stats)


def _path_lengths(
    g: TrainState, params, z: jax.Array, labels: jax.Array | None, rng: jax.Array, axis_name
) -> jax.Array:
    """StyleGAN2's path lengths [B/2] on every other row of the batch (its pl_batch_shrink = 2;
    every other row, so that pmap's rows are jit's): ||J_wᵀ y|| of G's synthesis at the ws
    of z, y ~ N(0, I) / √(H·W)."""
    z = z[::2]
    labels = None if labels is None else labels[::2]
    variables, rngs = g.variables(params), _g_rngs(rng)
    ws, _ = g.apply_fn(
        variables,
        *model_inputs(z, labels),
        train=True,
        rngs=rngs,
        method="mapping",
        mutable=["batch_stats"],
    )
    synthesis = lambda w: g.apply_fn(variables, w, train=True, rngs=rngs, method="synthesis")
    shape = jax.eval_shape(synthesis, ws).shape
    probe = jax.random.fold_in(rng, PATH_LENGTH_SALT)
    y = parallel.normal_rows(probe, z.shape[0], shape[1:], axis_name)
    return losses.path_lengths(synthesis, ws, y)


def _discriminate(
    d: TrainState, params, x: jax.Array, labels: jax.Array | None, update_stats: bool
) -> tuple[jax.Array, dict]:
    """D's logits [B] and its `batch_stats` (advanced one power iteration when `update_stats`
    and D has spectral norm; otherwise returned as they were)."""
    args = model_inputs(x, labels)
    if update_stats and d.batch_stats:
        logits, updates = d.apply_fn(
            d.variables(params), *args, train=True, update_stats=True, mutable=["batch_stats"]
        )
        return logits, updates["batch_stats"]
    return d.apply_fn(d.variables(params), *args, train=True, update_stats=False), d.batch_stats


def conditionals_are_slow() -> bool:
    """Whether the lazy regularisers run every step and select their value instead of skipping
    it with `lax.cond`: on XLA:CPU, where a convolution's weight gradient inside a conditional
    (or loop) body runs 20-60x slower than the same op outside one (jax-ml/jax#12868; measured
    here: R1's gradient of the StyleGAN2 D took 7.5 s in a `lax.cond`, 0.41 s without), so
    computing the penalty on every step is faster than skipping it on most. Both give the same
    values; `GENIMG_LAZY_COND=1` (or 0) forces the conditional (or the select)."""
    forced = os.environ.get("GENIMG_LAZY_COND", "")
    return forced == "0" if forced in ("0", "1") else jax.default_backend() == "cpu"


def lazily(now: jax.Array, penalty: Callable, otherwise: Callable, *operands):
    """`penalty(*operands)` on the steps where `now`, else `otherwise(*operands)`: a lazy
    regulariser's term (`conditionals_are_slow` says how)."""
    if conditionals_are_slow():
        taken, skipped = penalty(*operands), otherwise(*operands)
        return jax.tree.map(lambda a, b: jnp.where(now, a, b), taken, skipped)
    return jax.lax.cond(now, penalty, otherwise, *operands)


def ema_warmup(decay: float, step: jax.Array) -> jax.Array:
    """The EMA decay at `step`: min(decay, (1 + step) / (10 + step)), so that early averages are
    not dominated by the random initial weights."""
    return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def ema_half_life_decay(
    step: jax.Array, batch: int, half_life_kimg: float, rampup: float
) -> jax.Array:
    """StyleGAN2's EMA decay after `step` G updates of `batch` images: the average's half-life
    is `half_life_kimg` thousand images, or `rampup` times the images seen so far when that is
    less (0: no ramp-up): 0.5 ** (batch / half_life_images)."""
    half_life = jnp.float32(half_life_kimg * 1000.0)
    if rampup > 0:
        half_life = jnp.minimum(half_life, step.astype(jnp.float32) * batch * rampup)
    return 0.5 ** (batch / jnp.maximum(half_life, 1e-8))


def d_step(
    state: GANState,
    batch: Batch,
    rng: jax.Array,
    *,
    loss: GANLoss,
    latent_dim: int,
    num_classes: int = 0,
    r1_gamma: float = 0.0,
    r1_interval: int = 1,
    gp_weight: float = 0.0,
    augment: tuple[str, ...] = (),
    lecam_weight: float = 0.0,
    lecam_decay: float = 0.99,
    ada_groups: tuple[str, ...] = (),
    ada_target: float = 0.6,
    ada_kimg: float = 500.0,
    axis_name: str | None = None,
) -> tuple[GANState, dict]:
    """One discriminator update on real images and G's samples; G is left untouched.
    L = loss.d_loss + γ/2·R1·N on every N-th step (`r1_gamma` > 0, N = `r1_interval`) + λ·GP
    (`gp_weight` > 0) + λ_LC·LeCam (`lecam_weight` > 0), D seeing both sides through
    `augment`; D's spectral-norm statistics, if any, advance one power iteration."""
    fake_labels = _fake_labels(rng, batch, num_classes, axis_name)
    real_labels = _real_labels(batch, num_classes)
    z = _latents(rng, batch, latent_dim, axis_name)
    fake, _ = _generate(state.g, state.g.params, z, fake_labels, rng)
    fake = jax.lax.stop_gradient(fake)
    real = batch["image"]
    real_key, fake_key = (
        jax.random.fold_in(rng, s) for s in (REAL_AUGMENT_SALT, FAKE_AUGMENT_SALT)
    )
    real = _augmented(real, real_key, state.d, augment, ada_groups, axis_name)
    fake = _augmented(fake, fake_key, state.d, augment, ada_groups, axis_name)
    r1_now = state.d.step % r1_interval == 0  # lazy R1: this step carries the penalty

    def loss_fn(d_params):
        # Two passes, not one over concat([real, fake]): concatenating along the sharded batch
        # axis would make XLA move rows between devices (all-gathers) on every step. Both
        # passes use the same spectral-norm state; the first returns its update.
        real_logits, stats = _discriminate(state.d, d_params, real, real_labels, True)
        fake_logits, _ = _discriminate(state.d, d_params, fake, fake_labels, False)
        total = loss.d_loss(real_logits, fake_logits)
        penalties = {}
        if r1_gamma > 0 or gp_weight > 0:
            d_real = lambda x: _discriminate(state.d, d_params, x, real_labels, False)[0]
            if r1_gamma > 0:
                penalties["d_r1"] = lazily(
                    r1_now, lambda: losses.r1_penalty(d_real, real), lambda: jnp.float32(0.0)
                )
                total = total + 0.5 * r1_gamma * r1_interval * penalties["d_r1"]
            if gp_weight > 0:  # interpolates carry the real images' labels
                noise = jax.random.fold_in(rng, PENALTY_SALT)
                penalties["d_gp"] = losses.gradient_penalty(d_real, real, fake, noise, axis_name)
                total = total + gp_weight * penalties["d_gp"]
        if lecam_weight > 0:
            anchors = state.d.hparams
            penalties["d_lecam"] = losses.lecam_penalty(
                real_logits, fake_logits, anchors["lecam_real"], anchors["lecam_fake"]
            )
            total = total + lecam_weight * penalties["d_lecam"]
        return total, (real_logits, fake_logits, stats, penalties)

    (d_loss, (real_logits, fake_logits, stats, penalties)), grads = jax.value_and_grad(
        loss_fn, has_aux=True
    )(state.d.params)
    grads = parallel.mean(grads, axis_name)
    metrics = {
        "d_loss": d_loss,
        "d_real": jnp.mean(jax.nn.sigmoid(real_logits)),
        "d_fake": jnp.mean(jax.nn.sigmoid(fake_logits)),
        **penalties,
    }
    metrics = parallel.mean(metrics, axis_name) | {"d_grad_norm": optax.tree.norm(grads)}
    d = state.d.apply_gradients(grads=grads, batch_stats=stats)
    if lecam_weight > 0:  # the anchors follow the global batch's mean outputs
        means = parallel.mean((jnp.mean(real_logits), jnp.mean(fake_logits)), axis_name)
        d = d.replace(hparams=losses.lecam_anchors(d.hparams, *means, lecam_decay))
    if ada_groups:  # p follows the sign of D's outputs on (augmented) reals
        signs = parallel.mean(jnp.mean(jnp.sign(real_logits)), axis_name)
        images = real.shape[0] * (jax.lax.psum(1, axis_name) if axis_name else 1)
        p = augment_lib.ada_update(d.hparams["ada_p"], signs, ada_target, images, ada_kimg)
        d = d.replace(hparams={**d.hparams, "ada_p": p})
        metrics |= {"ada_p": p, "ada_rt": signs}
    if (skipped := skipped_updates(d)) is not None:
        metrics["d_skipped"] = skipped
    return state.replace(d=d), metrics


def g_step(
    state: GANState,
    batch: Batch,
    rng: jax.Array,
    *,
    loss: GANLoss,
    latent_dim: int,
    ema_decay: float,
    ema_kimg: float = 0.0,
    ema_rampup: float = 0.0,
    num_classes: int = 0,
    augment: tuple[str, ...] = (),
    ada_groups: tuple[str, ...] = (),
    pl_weight: float = 0.0,
    pl_interval: int = 4,
    pl_decay: float = 0.01,
    axis_name: str | None = None,
) -> tuple[GANState, dict]:
    """One generator update against a frozen D (its parameters and spectral-norm statistics
    are read, not changed), through D's `augment`; updates G's statistics and EMA (decay
    `ema_decay` warmed up by `ema_warmup`, or with `ema_kimg` > 0 a half-life in images,
    `ema_half_life_decay`). With `pl_weight` > 0 (StyleGAN2's G), every `pl_interval`-th
    step adds pl_weight · pl_interval · E[(path length − a)²], a = G's `hparams["pl_mean"]`,
    which moves towards the global batch's mean path length by `pl_decay` first."""
    labels = _fake_labels(rng, batch, num_classes, axis_name)
    z = _latents(rng, batch, latent_dim, axis_name)
    augment_key = jax.random.fold_in(rng, FAKE_AUGMENT_SALT)
    pl_now = state.g.step % pl_interval == 0  # lazy path-length regularisation

    def path_length_terms(g_params):
        lengths = _path_lengths(state.g, g_params, z, labels, rng, axis_name)
        mean_length = parallel.mean(jnp.mean(jax.lax.stop_gradient(lengths)), axis_name)
        target = state.g.hparams["pl_mean"] + pl_decay * (mean_length - state.g.hparams["pl_mean"])
        return losses.path_length_penalty(lengths, target), target

    def loss_fn(g_params):
        fake, batch_stats = _generate(state.g, g_params, z, labels, rng)
        fake = _augmented(fake, augment_key, state.d, augment, ada_groups, axis_name)
        logits, _ = _discriminate(state.d, state.d.params, fake, labels, False)
        g_loss = loss.g_loss(logits)
        total, terms = g_loss, {}
        if pl_weight > 0:
            skip = lambda _: (jnp.float32(0.0), state.g.hparams["pl_mean"])
            penalty, target = lazily(pl_now, path_length_terms, skip, g_params)
            total = total + pl_weight * pl_interval * penalty
            terms = {"g_pl": penalty, "pl_mean": target}
        return total, (g_loss, batch_stats, terms)

    (_, (g_loss, batch_stats, terms)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.g.params
    )
    grads = parallel.mean(grads, axis_name)
    batch_stats = jax.tree.map(  # running statistics never take a non-finite batch's values
        lambda new, old: jnp.where(jnp.isfinite(new), new, old), batch_stats, state.g.batch_stats
    )
    g = state.g.apply_gradients(grads=grads, batch_stats=batch_stats)
    if pl_weight > 0:  # the target is the same on every device (a global mean)
        g = g.replace(hparams={**g.hparams, "pl_mean": terms["pl_mean"]})
    if g.ema_params is not None:
        if ema_kimg > 0:  # the global batch's images per update
            images = batch["image"].shape[0] * (jax.lax.psum(1, axis_name) if axis_name else 1)
            decay = ema_half_life_decay(g.step, images, ema_kimg, ema_rampup)
        else:
            decay = ema_warmup(ema_decay, g.step)
        g = g.replace(
            ema_params=optax.incremental_update(g.params, g.ema_params, step_size=1.0 - decay)
        )
    metrics = {
        "g_loss": parallel.mean(g_loss, axis_name),
        "g_grad_norm": optax.tree.norm(grads),
        **parallel.mean(terms, axis_name),
    }
    if (skipped := skipped_updates(g)) is not None:
        metrics["g_skipped"] = skipped
    return state.replace(g=g), metrics


def train_step(
    state: GANState,
    batch: Batch,
    rng: jax.Array,
    *,
    loss: GANLoss,
    latent_dim: int,
    ema_decay: float,
    ema_kimg: float = 0.0,
    ema_rampup: float = 0.0,
    d_steps: int = 1,
    num_classes: int = 0,
    r1_gamma: float = 0.0,
    r1_interval: int = 1,
    gp_weight: float = 0.0,
    augment: tuple[str, ...] = (),
    lecam_weight: float = 0.0,
    lecam_decay: float = 0.99,
    ada_groups: tuple[str, ...] = (),
    ada_target: float = 0.6,
    ada_kimg: float = 500.0,
    pl_weight: float = 0.0,
    pl_interval: int = 4,
    pl_decay: float = 0.01,
    axis_name: str | None = None,
) -> tuple[GANState, dict]:
    """`d_steps` D updates then one G update, as one program (the D updates are unrolled: on
    XLA:CPU a `lax.scan` over them ran 4x slower); metrics are the last D update's and the G
    update's. With d_steps > 1 the batch holds a fresh real batch for each D update, stacked on
    axis 1 (images [B, d_steps, H, W, C], `pipeline.Batches(draws=d_steps)`), as in Gulrajani et
    al.'s Algorithm 1; a batch without that axis is reused by every D update."""
    metrics = {}
    shared = {
        "loss": loss,
        "latent_dim": latent_dim,
        "num_classes": num_classes,
        "augment": augment,
        "ada_groups": ada_groups,
        "axis_name": axis_name,
    }
    penalties = {
        "r1_gamma": r1_gamma,
        "r1_interval": r1_interval,
        "gp_weight": gp_weight,
        "lecam_weight": lecam_weight,
        "lecam_decay": lecam_decay,
        "ada_target": ada_target,
        "ada_kimg": ada_kimg,
    }
    fresh = batch["image"].ndim == 5  # [B, d_steps, H, W, C]: one real batch per D update

    def draw(i: int) -> Batch:
        return jax.tree.map(lambda x: x[:, i], batch) if fresh else batch

    for i in range(d_steps):
        state, metrics = d_step(state, draw(i), jax.random.fold_in(rng, i), **shared, **penalties)
    rng_g = jax.random.fold_in(rng, d_steps)
    ema = {"ema_decay": ema_decay, "ema_kimg": ema_kimg, "ema_rampup": ema_rampup}
    path_length = {"pl_weight": pl_weight, "pl_interval": pl_interval, "pl_decay": pl_decay}
    state, g_metrics = g_step(state, draw(d_steps - 1), rng_g, **ema, **path_length, **shared)
    return state, {**metrics, **g_metrics}
