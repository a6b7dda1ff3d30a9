"""The GAN family: a generator G (with an EMA of its weights) and a discriminator D, each with
its own TrainState and optimizer, trained by `step.train_step` on images in [-1, 1] and scored
on sample quality (`scoring.gan_scorer`)."""

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections

from genimg_jax.core import augment, fields, losses
from genimg_jax.core import state as state_lib
from genimg_jax.core.family import Family, SweepAxes
from genimg_jax.core.fields import Rules
from genimg_jax.data import checks
from genimg_jax.families import draw
from genimg_jax.families.gan import scoring
from genimg_jax.families.gan import step as gan_step
from genimg_jax.families.gan.state import GANState
from genimg_jax.features import feature_nets
from genimg_jax.models.common import model_inputs

SCORES = {"fid": "min", "kid": "min", "precision": "max", "recall": "max", "inception_score": "max"}


def gan_samples(state: GANState, z: jax.Array, labels: jax.Array | None = None) -> jax.Array:
    """G(z[, labels]) with the EMA weights when kept, BatchNorm in inference mode: [N, H, W, C]
    in [-1, 1]. A conditional G without labels draws the classes 0, 1, ..., K-1, 0, ... of the
    batch's rows; an unconditional G is called without them."""
    g = state.g
    return g.apply_fn(g.variables(g.inference_params), *model_inputs(z, labels), train=False)


def _policy(allowed: tuple[str, ...], what: str) -> fields.Rule:
    """A comma-separated list of names from `allowed`, or ''."""
    return (
        lambda v: isinstance(v, str) and all(p in allowed for p in augment.parse_policy(v)),
        f"comma-separated {what} of {', '.join(allowed)}, or ''",
    )


class GANFamily(Family):
    """A GAN whose (G, D) modules `build(config)` returns."""

    value_range = (-1.0, 1.0)
    hyperparameters = ("train.g_lr", "train.d_lr")
    sweep_axes = SweepAxes(learning_rates=("train.g_lr", "train.d_lr"), losses=("d_loss", "g_loss"))

    def __init__(
        self, build: Callable[[ml_collections.ConfigDict], tuple], minibatch_stddev: bool = True
    ):
        self._build = build
        self._minibatch_stddev = minibatch_stddev  # whether D reads `model.mbstd_group`

    def build(self, config):
        return self._build(config)

    def add_defaults(self, c: ml_collections.ConfigDict) -> None:
        c.model.g_width = 64
        c.model.d_width = 64
        c.model.num_classes = 0  # > 0: class-conditional G and projection D (needs labels)
        # > 0: InfoGAN's categorical code of K values for G, predicted by a head on D (no labels)
        c.model.latent_codes = 0
        # > 0: InfoGAN's continuous codes, z's first C dims, which the head also predicts
        c.model.latent_continuous = 0
        c.model.mbstd_group = 0  # > 0: D's minibatch standard deviation over groups this size
        c.train.loss = "non_saturating"
        c.train.r1_gamma = 0.0  # R1 penalty γ/2·E||∇D(x)||² on real images; 0 = off
        c.train.r1_interval = 1  # lazy R1: on every N-th D step only, scaled by N (StyleGAN2: 16)
        c.train.augment = ""  # DiffAugment policies D sees, e.g. "color,translation,cutout"
        c.train.lecam_weight = 0.0  # LeCam regulariser's weight (Tseng et al. 2021); 0 = off
        c.train.lecam_decay = 0.99  # its anchors: EMAs of D's mean outputs on real and fake
        c.train.ada = ""  # ADA's groups D sees at an adaptive probability p: "blit,geom"
        c.train.ada_target = 0.6  # p rises while E[sign(D(real))] is above this
        c.train.ada_kimg = 500.0  # p can move by 1 in this many thousand real images
        c.train.gp_weight = 0.0  # WGAN-GP penalty λ·E(||∇D(x̂)|| - 1)²; 0 = off
        c.train.mode_seeking = 0.0  # MSGAN's λ·E[1 / (|ΔG(z)| / |Δz|)] in G's loss; 0 = off
        c.train.info_weight = 1.0  # λ of InfoGAN's loss E[-log Q(c | G(z, c))] in G's and D's
        c.train.g_lr = 2e-4
        c.train.d_lr = 2e-4
        c.train.b1 = 0.5
        c.train.d_steps = 1  # D updates per G update
        c.train.ema_decay = 0.999  # EMA of G's weights; 0 = off
        c.train.ema_kimg = 0.0  # > 0: the EMA's half-life in thousands of images (StyleGAN2: 10)
        c.train.ema_rampup = 0.0  # > 0: the half-life is at most this x the images seen (0.05)
        # lazy regularisers' skipped steps: "auto" (computed and selected on XLA:CPU, skipped by
        # lax.cond elsewhere; step.conditionals_are_slow), "cond" or "select"; same values
        c.train.lazy_regularizers = "auto"
        feature_nets.add_defaults(c)
        c.eval.best_metric = "fid"  # keep the best checkpoint by this score; "" = don't
        # the real images samples are compared with: the first eval.examples of this split;
        # "" = data.eval_split (the test images), or e.g. "train" (README, Evaluation)
        c.eval.reference_split = ""

    def rules(self, config: ml_collections.ConfigDict) -> Rules:
        return {
            "model.g_width": fields.positive(),
            "model.d_width": fields.positive(),
            "model.num_classes": fields.count(),
            "model.latent_codes": self._codes_rule(config),
            "model.latent_continuous": self._continuous_rule(config),
            "model.mbstd_group": fields.count()
            if self._minibatch_stddev
            else ((lambda g: g == 0), "0 (this D has no minibatch standard deviation)"),
            "train.loss": fields.one_of(losses.GAN_LOSSES),
            "train.r1_gamma": fields.at_least(0),
            "train.r1_interval": fields.positive(),
            "train.augment": _policy(augment.POLICIES, "policies"),
            "train.lecam_weight": fields.at_least(0),
            "train.ada": _policy(augment.ADA_GROUPS, "groups"),
            "train.ada_target": fields.in_unit(),
            "train.ada_kimg": fields.positive(),
            "train.lecam_decay": fields.in_unit(),
            "train.gp_weight": fields.at_least(0),
            "train.info_weight": fields.at_least(0),
            "train.mode_seeking": fields.at_least(0)
            if config.train.batch_size % 2 == 0
            else ((lambda w: w == 0), "0 while train.batch_size is odd (MSGAN pairs its rows)"),
            "train.g_lr": fields.positive(),
            "train.d_lr": fields.positive(),
            "train.d_steps": fields.positive(),
            "train.ema_decay": fields.in_unit(),
            "train.ema_kimg": fields.at_least(0),
            "train.ema_rampup": fields.at_least(0),
            "train.lazy_regularizers": fields.one_of(gan_step.LAZY_MODES),
            "eval.reference_split": fields.text(
                "a split name such as 'train' or 'test', or '' (data.eval_split)"
            ),
        } | feature_nets.rules(config)

    def _codes_rule(self, config: ml_collections.ConfigDict) -> fields.Rule:
        """InfoGAN's code: a G takes classes or codes, not both."""
        if config.model.num_classes > 0:
            return (lambda k: k == 0), "0 while model.num_classes > 0 (G takes classes or codes)"
        return fields.count()

    def _continuous_rule(self, config: ml_collections.ConfigDict) -> fields.Rule:
        """InfoGAN's continuous codes: some of z's dims, on an unconditional D."""
        if config.model.num_classes > 0:
            return (lambda c: c == 0), "0 while model.num_classes > 0 (Q reads unconditional D)"
        dims, is_count = config.model.latent_dim, fields.count()[0]
        return (lambda c: is_count(c) and c <= dims), f"an integer from 0 to {dims} (latent_dim)"

    def shrink_for_tests(self, c: ml_collections.ConfigDict) -> None:
        c.model.g_width = c.model.d_width = 8

    def check_data(self, config: ml_collections.ConfigDict) -> None:
        """A conditional G and D need the data's labels, one per class."""
        checks.check_labels(config.data, config.model.num_classes)

    def make_optimizer(self, config: ml_collections.ConfigDict) -> tuple:
        """(G's optimizer, D's): `train`'s optimizer for both."""
        tx = state_lib.make_optimizer(config.train)
        return tx, tx

    def lr_scales(self, config: ml_collections.ConfigDict) -> tuple[float, float]:
        """(G's, D's) factors on `train.g_lr` and `train.d_lr`: 1."""
        return 1.0, 1.0

    def create_state(self, config: ml_collections.ConfigDict, rng: jax.Array) -> GANState:
        (g, d), (g_tx, d_tx) = self.static_parts(config)
        g_lr, d_lr = self._learning_rates(config)
        g_rng, d_rng = jax.random.split(rng)
        z = jnp.zeros((1, config.model.latent_dim))
        x = jnp.zeros((1, *state_lib.image_shape(config)))
        ema = config.train.ema_decay > 0 or config.train.ema_kimg > 0
        # D's running statistics travel with it (checkpointed, per member in a sweep): LeCam's
        # anchors, ADA's probability p, all starting at 0
        d_stats = {}
        if config.train.lecam_weight > 0:
            d_stats |= {"lecam_real": 0.0, "lecam_fake": 0.0}
        if config.train.ada:
            d_stats["ada_p"] = 0.0
        return GANState(
            g=state_lib.create_train_state(g, g_tx, g_lr, g_rng, z, ema=ema),
            d=state_lib.create_train_state(d, d_tx, d_lr, d_rng, x, stats=d_stats),
        )

    def _learning_rates(self, config: ml_collections.ConfigDict) -> tuple[float, float]:
        g_scale, d_scale = self.lr_scales(config)
        return config.train.g_lr * g_scale, config.train.d_lr * d_scale

    def apply_hparams(self, state: GANState, config: ml_collections.ConfigDict) -> GANState:
        g_lr, d_lr = self._learning_rates(config)
        return state.replace(
            g=state_lib.with_learning_rate(state.g, g_lr),
            d=state_lib.with_learning_rate(state.d, d_lr),
        )

    def networks(self, state: GANState) -> dict:
        return {"generator (G)": state.g, "discriminator (D)": state.d}

    def real_batches_per_step(self, config: ml_collections.ConfigDict) -> int:
        """One fresh real batch per D update (Gulrajani et al. 2017, Algorithm 1)."""
        return config.train.d_steps

    def step_spec(self, config: ml_collections.ConfigDict) -> gan_step.GANStep:
        """The static settings of the config's GAN step, each phase None when off."""
        t = config.train
        ada_groups = augment.parse_policy(t.ada)
        return gan_step.GANStep(
            loss=losses.GAN_LOSSES[t.loss],
            latent_dim=config.model.latent_dim,
            ema=gan_step.EMA(t.ema_decay, t.ema_kimg, t.ema_rampup),
            num_classes=config.model.num_classes,
            d_steps=t.d_steps,
            augment=augment.parse_policy(t.augment),
            r1=gan_step.LazyPenalty(t.r1_gamma, t.r1_interval) if t.r1_gamma > 0 else None,
            gp_weight=t.gp_weight,
            lecam=gan_step.LeCam(t.lecam_weight, t.lecam_decay) if t.lecam_weight > 0 else None,
            ada=gan_step.ADA(ada_groups, t.ada_target, t.ada_kimg) if ada_groups else None,
            lazy=t.lazy_regularizers,
            info=self._info(config),
            mode_seeking=t.mode_seeking,
        )

    def _info(self, config: ml_collections.ConfigDict) -> gan_step.Info | None:
        """InfoGAN's codes, None without any."""
        codes, continuous = config.model.latent_codes, config.model.latent_continuous
        if not codes and not continuous:
            return None
        return gan_step.Info(codes, config.train.info_weight, continuous)

    def make_train_step(self, config: ml_collections.ConfigDict, axis_name: str | None):
        spec = self.step_spec(config)
        return functools.partial(gan_step.train_step, spec=spec, axis_name=axis_name)

    def grid_inputs(self, config: ml_collections.ConfigDict, key: jax.Array) -> dict:
        return {"z": draw.latents(key, config.eval.num_samples, config.model.latent_dim)}

    def sample_grids(self, state: GANState, z: jax.Array) -> dict:
        return {"samples": gan_samples(state, z)}

    def samples(self, state: GANState, z: jax.Array, labels: jax.Array | None) -> jax.Array:
        return gan_samples(state, z, labels)

    def score_modes(self, data: ml_collections.ConfigDict) -> dict[str, str]:
        return SCORES

    def make_scorer(self, config: ml_collections.ConfigDict):
        return scoring.gan_scorer(self, config)
