"""The pure GAN step: (GANState, batch, rng) -> (GANState, metrics), its static settings one
frozen `GANStep` the family builds once from the config.

`axis_name` is None under `jax.jit` (the batch is global) and the pmap axis under `jax.pmap`
(the batch is one device's rows); see `genimg_jax.core.collectives`. Every random draw
(latents, fake labels, interpolation weights) is made for the global batch and sliced per
device, so jit and pmap give the same numbers.

A step is StyleGAN2-ADA's phases in one program: `d_steps` D updates (Dmain, with the R1 phase
Dreg every `r1.interval`-th update and WGAN-GP's penalty), then one G update (Gmain, with the
path-length phase Greg every `path_length.interval`-th update). A lazy phase's term is added to
its main loss times its interval on the updates it runs.

D's `batch_stats` (spectral norm's power-iteration state, when D has one) advance in the D step
only; the G step reads them and leaves D, parameters and statistics, untouched. Running
statistics live in each network's `stats`, apart from the traced hyperparameters: ADA's
probability p and LeCam's anchors in D's, the path-length mean in G's.

For little data: D can see every image, real and fake, through ADA's transformations at the
probability p that each D step steers and through DiffAugment (`augment`; see
`genimg_jax.core.augment`; G learns through both); LeCam's regulariser keeps D's outputs near
EMA anchors of the other side's.

Without labels, InfoGAN's categorical code (`info`) gives G a discrete input c ~ U{0..K-1}
beside z, and both networks the loss λ·E[-log Q(c | G(z, c))], Q a head on D's features: G
learns to draw K distinguishable kinds of image (on digits, mostly the ten classes), where an
unconditional G blends neighbouring kinds. InfoGAN's continuous codes are z's first C dims,
which Q also predicts (a unit-variance Gaussian around its means): G must keep C directions of
variation visible in its images. MSGAN's mode-seeking term (`mode_seeking`) asks two of G's
samples that share their class or code to differ as much as their latents do.
"""

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from genimg_jax.core import augment as augment_lib
from genimg_jax.core import collectives, losses
from genimg_jax.core import state as state_lib
from genimg_jax.core.losses import GANLoss
from genimg_jax.core.state import TrainState, skipped_updates
from genimg_jax.families.gan.state import GANState
from genimg_jax.models.common import model_inputs

Batch = dict[str, jax.Array]  # {"image": [B, H, W, C] in [-1, 1], "label": int32 [B], ...}
# fold_in salts: fake labels, penalty noise, augmentation of real and fake (z uses rng itself)
LABELS_SALT, PENALTY_SALT, REAL_AUGMENT_SALT, FAKE_AUGMENT_SALT = 1, 2, 3, 4
ADA_SALT = 5  # folded into the augmentation keys for ADA's draws
# G's own randomness (StyleGAN2: per-layer noise, style mixing) and the path-length probe
NOISE_SALT, MIXING_SALT, PATH_LENGTH_SALT = 6, 7, 8
CODES_SALT = 9  # InfoGAN's codes
LAZY_MODES = ("auto", "cond", "select")
FAKE_LABELS = ("uniform", "data")  # a conditional G's classes: uniform, or the data's labels


@dataclasses.dataclass(frozen=True)
class EMA:
    """G's weight average: `decay` warmed up by `core.state.ema_warmup`, or with `kimg` > 0 a
    half-life in thousands of images (`ema_half_life_decay`, ramped up by `rampup`)."""

    decay: float
    kimg: float
    rampup: float


@dataclasses.dataclass(frozen=True)
class LazyPenalty:
    """A regulariser's phase: `weight` · penalty, on every `interval`-th update, times
    `interval`."""

    weight: float
    interval: int


@dataclasses.dataclass(frozen=True)
class PathLength(LazyPenalty):
    """StyleGAN2's path-length phase; its target moves towards the batch's mean by `decay`."""

    decay: float


@dataclasses.dataclass(frozen=True)
class LeCam:
    """LeCam's regulariser (Tseng et al. 2021) and the EMA rate of its anchors."""

    weight: float
    decay: float


@dataclasses.dataclass(frozen=True)
class ADA:
    """ADA's transformation `groups` at a probability p steered towards E[sign(D(real))] =
    `target`, moving by at most 1 per `kimg` thousand images."""

    groups: tuple[str, ...]
    target: float
    kimg: float


@dataclasses.dataclass(frozen=True)
class Info:
    """InfoGAN's codes: a categorical code of `codes` values (0: none) and `continuous` codes
    (z's first dims; 0: none), the loss's `weight` λ in both networks'."""

    codes: int
    weight: float
    continuous: int = 0


@dataclasses.dataclass(frozen=True)
class GANStep:
    """Everything static about a GAN training step (a phase is None when off)."""

    loss: GANLoss
    latent_dim: int
    ema: EMA
    num_classes: int = 0
    d_steps: int = 1
    augment: tuple[str, ...] = ()  # DiffAugment's policies
    r1: LazyPenalty | None = None  # weight: γ of γ/2·R1
    gp_weight: float = 0.0
    lecam: LeCam | None = None
    ada: ADA | None = None
    path_length: PathLength | None = None
    lazy: str = "auto"  # how a lazy phase skips: `lazily`
    fake_labels: str = "uniform"  # `_fake_labels`
    info: Info | None = None  # InfoGAN's code (unconditional models only)
    mode_seeking: float = 0.0  # MSGAN's weight; > 0: G's rows pair up (`_g_inputs`)


def _augmented(x, rng, d: TrainState, spec: GANStep, axis_name):
    """x as D sees it: ADA's groups at D's probability p, then DiffAugment's policies."""
    if spec.ada is not None:
        p = jax.lax.stop_gradient(d.stats["ada_p"])
        key = jax.random.fold_in(rng, ADA_SALT)
        x = augment_lib.ada_augment(x, key, p, spec.ada.groups, axis_name)
    return augment_lib.diff_augment(x, rng, spec.augment, axis_name)


def _latents(rng: jax.Array, batch: Batch, latent_dim: int, axis_name: str | None) -> jax.Array:
    """z ~ N(0, I): [B, Z], this device's rows of the global batch's latents."""
    return collectives.normal_rows(rng, batch["image"].shape[0], (latent_dim,), axis_name)


def _fake_labels(
    rng: jax.Array, batch: Batch, num_classes: int, axis_name: str | None, how: str = "uniform"
) -> jax.Array | None:
    """Classes for G's samples: int32 [B] (this device's rows of one global draw); None when
    unconditional. "uniform": each class alike; "data": the labels of examples drawn with
    replacement from the global batch, so the classes follow the data's (StyleGAN2-ADA draws
    its fake labels from the training set)."""
    if num_classes <= 0:
        return None
    rng = jax.random.fold_in(rng, LABELS_SALT)
    rows = batch["image"].shape[0]
    if how == "uniform":
        draw = lambda key, n: jax.random.randint(key, (n,), 0, num_classes, dtype=jnp.int32)
        return collectives.global_rows(draw, rng, rows, axis_name)
    labels = _real_labels(batch, num_classes)
    if axis_name is not None:  # every device's labels, in device order: the global batch's
        labels = jax.lax.all_gather(labels, axis_name, tiled=True)
    pick = lambda key, n: jax.random.randint(key, (n,), 0, n, dtype=jnp.int32)
    return labels[collectives.global_rows(pick, rng, rows, axis_name)]


def _g_inputs(rng: jax.Array, batch: Batch, spec: GANStep, axis_name: str | None) -> tuple:
    """(G's labels, D's labels of the fakes): the fake classes of a conditional model for both;
    InfoGAN's categorical codes c ~ U{0..K-1} for G (None without one) and None for D; (None,
    None) otherwise. With MSGAN's term, rows 2j and 2j+1 share theirs (`losses.mode_seeking_loss`)."""
    labels = _fake_labels(rng, batch, spec.num_classes, axis_name, spec.fake_labels)
    if spec.info is None:
        labels = _paired(labels, spec)
        return labels, labels
    key = jax.random.fold_in(rng, CODES_SALT)
    return _paired(_fake_labels(key, batch, spec.info.codes, axis_name, "uniform"), spec), None


def _paired(labels: jax.Array | None, spec: GANStep) -> jax.Array | None:
    """Row 2j's label on rows 2j and 2j+1 with MSGAN's term (this device's rows start at an even
    global row), else the labels as they are."""
    if labels is None or spec.mode_seeking <= 0:
        return labels
    return jnp.repeat(labels[0::2], 2, total_repeat_length=labels.shape[0])


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
    y = collectives.normal_rows(probe, z.shape[0], shape[1:], axis_name)
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


def _discriminate_with_codes(d: TrainState, params, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """An unconditional D's logits [B] and its code head's (InfoGAN's Q) logits [B, K], from one
    pass (D's statistics read, not advanced)."""
    logits, sown = d.apply_fn(
        d.variables(params), x, train=True, update_stats=False, mutable=["intermediates"]
    )
    return logits, sown["intermediates"]["code_logits"][0]


def _fake_logits(d: TrainState, params, fake, labels, codes, spec: GANStep) -> tuple:
    """D's logits on fakes and, with InfoGAN's codes, their loss E[-log Q(c | fake)] (else None):
    `codes` is (the categorical codes int32 [B] or None, G's latents z [B, Z])."""
    if spec.info is None:
        return _discriminate(d, params, fake, labels, False)[0], None
    logits, head = _discriminate_with_codes(d, params, fake)
    (categorical, z), k, c = codes, spec.info.codes, spec.info.continuous
    info = losses.info_loss(head[:, :k], categorical) if k else jnp.float32(0.0)
    if c:
        info = info + losses.info_continuous_loss(head[:, k:], z[:, :c])
    return logits, info


def conditionals_are_slow(mode: str = "auto") -> bool:
    """Whether a lazy phase runs every step and selects its value instead of skipping it with
    `lax.cond`: "select" or "cond" as `mode` (the config's `train.lazy_regularizers`) says;
    "auto" selects on XLA:CPU, where a convolution's weight gradient inside a conditional (or
    loop) body runs 20-60x slower than the same op outside one (jax-ml/jax#12868; measured: R1's
    gradient of the StyleGAN2 D took 7.5 s in a `lax.cond`, 0.41 s without), so computing the
    penalty on every step is faster than skipping it on most. Both give the same values."""
    if mode not in LAZY_MODES:
        raise ValueError(f"lazy mode {mode!r}; use one of {', '.join(LAZY_MODES)}")
    return mode == "select" if mode != "auto" else jax.default_backend() == "cpu"


def lazily(now: jax.Array, penalty: Callable, otherwise: Callable, *operands, mode="auto"):
    """`penalty(*operands)` on the steps where `now`, else `otherwise(*operands)`: a lazy
    phase's term (`conditionals_are_slow(mode)` says how)."""
    if conditionals_are_slow(mode):
        taken, skipped = penalty(*operands), otherwise(*operands)
        return jax.tree.map(lambda a, b: jnp.where(now, a, b), taken, skipped)
    return jax.lax.cond(now, penalty, otherwise, *operands)


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


def _d_loss_fn(state: GANState, spec: GANStep, inputs: dict, rng: jax.Array, axis_name):
    """D's loss of `inputs` (real and fake images and labels) as a function of its parameters:
    loss.d_loss + γ/2·R1·N on every N-th update + λ·GP + λ_LC·LeCam + λ_I·InfoGAN's loss."""
    real, fake, real_labels, fake_labels = (
        inputs[k] for k in ("real", "fake", "real_labels", "fake_labels")
    )
    d = state.d

    def loss_fn(d_params):
        # Two passes, not one over concat([real, fake]): concatenating along the sharded batch
        # axis would make XLA move rows between devices (all-gathers) on every step. Both
        # passes use the same spectral-norm state; the first returns its update.
        real_logits, stats = _discriminate(d, d_params, real, real_labels, True)
        fake_logits, info = _fake_logits(d, d_params, fake, fake_labels, inputs["codes"], spec)
        total = spec.loss.d_loss(real_logits, fake_logits)
        penalties = {}
        if info is not None:
            penalties["d_info"] = info
            total = total + spec.info.weight * info
        d_real = lambda x: _discriminate(d, d_params, x, real_labels, False)[0]
        if spec.r1 is not None:
            r1_now = d.step % spec.r1.interval == 0  # lazy R1: this update carries the penalty
            penalties["d_r1"] = lazily(
                r1_now,
                lambda: losses.r1_penalty(d_real, real),
                lambda: jnp.float32(0.0),
                mode=spec.lazy,
            )
            total = total + 0.5 * spec.r1.weight * spec.r1.interval * penalties["d_r1"]
        if spec.gp_weight > 0:  # interpolates carry the real images' labels
            noise = jax.random.fold_in(rng, PENALTY_SALT)
            penalties["d_gp"] = losses.gradient_penalty(d_real, real, fake, noise, axis_name)
            total = total + spec.gp_weight * penalties["d_gp"]
        if spec.lecam is not None:
            anchors = d.stats
            penalties["d_lecam"] = losses.lecam_penalty(
                real_logits, fake_logits, anchors["lecam_real"], anchors["lecam_fake"]
            )
            total = total + spec.lecam.weight * penalties["d_lecam"]
        return total, (real_logits, fake_logits, stats, penalties)

    return loss_fn


def _d_running_stats(d: TrainState, spec: GANStep, logits: tuple, real, axis_name):
    """D's running statistics after an update: LeCam's anchors follow the global batch's mean
    outputs; ADA's p follows the sign of D's outputs on (augmented) reals. (new D, metrics)."""
    real_logits, fake_logits = logits
    metrics = {}
    if spec.lecam is not None:
        means = collectives.mean((jnp.mean(real_logits), jnp.mean(fake_logits)), axis_name)
        d = d.replace(stats=losses.lecam_anchors(d.stats, *means, spec.lecam.decay))
    if spec.ada is not None:
        signs = collectives.mean(jnp.mean(jnp.sign(real_logits)), axis_name)
        images = collectives.global_count(real.shape[0], axis_name)
        p = augment_lib.ada_update(d.stats["ada_p"], signs, spec.ada.target, images, spec.ada.kimg)
        d = d.replace(stats={**d.stats, "ada_p": p})
        metrics |= {"ada_p": p, "ada_rt": signs}
    return d, metrics


def d_step(
    state: GANState, batch: Batch, rng: jax.Array, spec: GANStep, axis_name: str | None = None
) -> tuple[GANState, dict]:
    """One discriminator update on real images and G's samples (`_d_loss_fn`), D seeing both
    sides through its augmentations; G is left untouched. D's spectral-norm statistics, if any,
    advance one power iteration."""
    g_labels, fake_labels = _g_inputs(rng, batch, spec, axis_name)
    z = _latents(rng, batch, spec.latent_dim, axis_name)
    fake, _ = _generate(state.g, state.g.params, z, g_labels, rng)
    real_key, fake_key = (
        jax.random.fold_in(rng, s) for s in (REAL_AUGMENT_SALT, FAKE_AUGMENT_SALT)
    )
    inputs = {
        "real": _augmented(batch["image"], real_key, state.d, spec, axis_name),
        "fake": _augmented(jax.lax.stop_gradient(fake), fake_key, state.d, spec, axis_name),
        "real_labels": _real_labels(batch, spec.num_classes),
        "fake_labels": fake_labels,
        "codes": (g_labels, z),
    }
    loss_fn = _d_loss_fn(state, spec, inputs, rng, axis_name)
    (d_loss, (real_logits, fake_logits, stats, penalties)), grads = jax.value_and_grad(
        loss_fn, has_aux=True
    )(state.d.params)
    grads = collectives.mean(grads, axis_name)
    metrics = {
        "d_loss": d_loss,
        "d_real": jnp.mean(jax.nn.sigmoid(real_logits)),
        "d_fake": jnp.mean(jax.nn.sigmoid(fake_logits)),
        **penalties,
    }
    metrics = collectives.mean(metrics, axis_name) | {"d_grad_norm": optax.tree.norm(grads)}
    d = state.d.apply_gradients(grads=grads, batch_stats=stats)
    d, stat_metrics = _d_running_stats(
        d, spec, (real_logits, fake_logits), inputs["real"], axis_name
    )
    metrics |= stat_metrics
    if (skipped := skipped_updates(d)) is not None:
        metrics["d_skipped"] = skipped
    return state.replace(d=d), metrics


def _g_loss_fn(state: GANState, spec: GANStep, z, labels, d_labels, rng: jax.Array, axis_name):
    """G's loss as a function of its parameters: loss.g_loss through D's augmentations (D seeing
    `d_labels`), plus with InfoGAN's code λ·E[-log Q(c | G(z, c))] (c = `labels`), plus with a
    path-length phase weight · interval · E[(path length − a)²] on its updates, a the
    path-length mean moved towards the global batch's mean by `decay` first."""
    g, pl = state.g, spec.path_length
    augment_key = jax.random.fold_in(rng, FAKE_AUGMENT_SALT)

    def path_length_terms(g_params):
        lengths = _path_lengths(g, g_params, z, labels, rng, axis_name)
        mean_length = collectives.mean(jnp.mean(jax.lax.stop_gradient(lengths)), axis_name)
        target = g.stats["pl_mean"] + pl.decay * (mean_length - g.stats["pl_mean"])
        return losses.path_length_penalty(lengths, target), target

    def loss_fn(g_params):
        drawn, batch_stats = _generate(g, g_params, z, labels, rng)
        fake = _augmented(drawn, augment_key, state.d, spec, axis_name)
        logits, info = _fake_logits(state.d, state.d.params, fake, d_labels, (labels, z), spec)
        g_loss = spec.loss.g_loss(logits)
        total, terms = g_loss, {}
        if info is not None:
            total, terms = total + spec.info.weight * info, {"g_info": info}
        if spec.mode_seeking > 0:  # on G's images as drawn, before D's augmentations
            terms["g_ms"] = losses.mode_seeking_loss(drawn, z)
            total = total + spec.mode_seeking * terms["g_ms"]
        if pl is not None:
            pl_now = g.step % pl.interval == 0  # lazy path-length regularisation
            skip = lambda _: (jnp.float32(0.0), g.stats["pl_mean"])
            penalty, target = lazily(pl_now, path_length_terms, skip, g_params, mode=spec.lazy)
            total = total + pl.weight * pl.interval * penalty
            terms |= {"g_pl": penalty, "pl_mean": target}
        return total, (g_loss, batch_stats, terms)

    return loss_fn


def _ema_decay(g: TrainState, ema: EMA, batch: Batch, axis_name) -> jax.Array:
    """The EMA's decay for this update (`EMA`)."""
    if ema.kimg > 0:  # the global batch's images per update
        images = collectives.global_count(batch["image"].shape[0], axis_name)
        return ema_half_life_decay(g.step, images, ema.kimg, ema.rampup)
    return state_lib.ema_warmup(ema.decay, g.step)


def g_step(
    state: GANState, batch: Batch, rng: jax.Array, spec: GANStep, axis_name: str | None = None
) -> tuple[GANState, dict]:
    """One generator update against a frozen D (its parameters and spectral-norm statistics
    are read, not changed), through D's augmentations (`_g_loss_fn`); updates G's statistics,
    its path-length mean and its EMA."""
    labels, d_labels = _g_inputs(rng, batch, spec, axis_name)
    z = _latents(rng, batch, spec.latent_dim, axis_name)
    loss_fn = _g_loss_fn(state, spec, z, labels, d_labels, rng, axis_name)
    (_, (g_loss, batch_stats, terms)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.g.params
    )
    grads = collectives.mean(grads, axis_name)
    batch_stats = jax.tree.map(  # running statistics never take a non-finite batch's values
        lambda new, old: jnp.where(jnp.isfinite(new), new, old), batch_stats, state.g.batch_stats
    )
    g = state.g.apply_gradients(grads=grads, batch_stats=batch_stats)
    if spec.path_length is not None:  # the target is the same on every device (a global mean)
        g = g.replace(stats={**g.stats, "pl_mean": terms["pl_mean"]})
    if g.ema_params is not None:
        g = state_lib.with_ema(g, _ema_decay(g, spec.ema, batch, axis_name))
    metrics = {
        "g_loss": collectives.mean(g_loss, axis_name),
        "g_grad_norm": optax.tree.norm(grads),
        **collectives.mean(terms, axis_name),
    }
    if (skipped := skipped_updates(g)) is not None:
        metrics["g_skipped"] = skipped
    return state.replace(g=g), metrics


def train_step(
    state: GANState, batch: Batch, rng: jax.Array, spec: GANStep, axis_name: str | None = None
) -> tuple[GANState, dict]:
    """`spec.d_steps` D updates then one G update, as one program (the D updates are unrolled:
    on XLA:CPU a `lax.scan` over them ran 4x slower); metrics are the last D update's and the G
    update's. With d_steps > 1 the batch holds a fresh real batch for each D update, stacked on
    axis 1 (images [B, d_steps, H, W, C], `pipeline.Batches(draws=d_steps)`), as in Gulrajani et
    al.'s Algorithm 1; a batch without that axis is reused by every D update."""
    metrics = {}
    fresh = batch["image"].ndim == 5  # [B, d_steps, H, W, C]: one real batch per D update

    def draw(i: int) -> Batch:
        return jax.tree.map(lambda x: x[:, i], batch) if fresh else batch

    for i in range(spec.d_steps):
        state, metrics = d_step(state, draw(i), jax.random.fold_in(rng, i), spec, axis_name)
    rng_g = jax.random.fold_in(rng, spec.d_steps)
    state, g_metrics = g_step(state, draw(spec.d_steps - 1), rng_g, spec, axis_name)
    return state, {**metrics, **g_metrics}
