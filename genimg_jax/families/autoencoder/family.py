"""The autoencoder families: an encoder-decoder trained to reconstruct its images through a
bottleneck, with a PatchGAN discriminator where the family has one (`step.autoencoder_step`).

| `model.family` | bottleneck | discriminator | reconstruction | after |
|---|---|---|---|---|
| `vq_vae` | codebook | no | L2 | van den Oord et al. 2017 |
| `vqgan` | codebook | yes | L1 | Esser et al. 2021 (taming-transformers) |
| `kl_autoencoder` | Gaussian, KL weight 1e-6 | yes | L1 | Rombach et al. 2022 (latent diffusion) |

They draw no samples from noise; they encode images to codes or latents and decode them back
(`encode`, `decode`: `genimg reconstruct`, `genimg encode`, `genimg decode`), and are scored on
held-out reconstructions (`scoring.autoencoder_scorer`: PSNR, SSIM, rFID, codebook usage)."""

import functools
import os

import jax
import jax.numpy as jnp
import ml_collections

from genimg_jax.core import fields, losses
from genimg_jax.core import state as state_lib
from genimg_jax.core.family import Family, SweepAxes
from genimg_jax.core.fields import Rules
from genimg_jax.families.autoencoder import networks, quantizer, scoring
from genimg_jax.families.autoencoder.state import AutoencoderState
from genimg_jax.families.autoencoder.step import RECONSTRUCTIONS, AutoencoderStep, autoencoder_step
from genimg_jax.features import feature_nets, perceptual

BOTTLENECKS = ("vq", "kl")


def interleaved(x: jax.Array, x_hat: jax.Array) -> jax.Array:
    """Each original followed by its reconstruction: [2N, H, W, C]."""
    return jnp.stack([x, x_hat], axis=1).reshape(-1, *x.shape[1:])


class AutoencoderFamily(Family):
    """An autoencoder with a `bottleneck` ("vq" or "kl"), a discriminator by default or not,
    and a default reconstruction error (module doc's table)."""

    value_range = (-1.0, 1.0)
    hyperparameters = (
        "model.commitment",
        "model.kl_weight",
        "model.disc_weight",
        "model.disc_start",
        "model.adaptive_weight_max",
        "model.perceptual_weight",
        "model.codebook_decay",
        "model.dead_code_threshold",
        "train.lr",
        "train.disc_lr",
    )
    # the traced coefficients, in the autoencoder's `hparams` under their last name
    COEFFICIENTS = tuple(f.split(".")[1] for f in hyperparameters if f.startswith("model."))

    def __init__(self, bottleneck: str, discriminator: bool, reconstruction: str):
        self.bottleneck, self.discriminator = bottleneck, discriminator
        self.reconstruction = reconstruction
        self.sweep_axes = SweepAxes(
            rate="model.kl_weight" if bottleneck == "kl" else "",
            learning_rates=("train.lr", "train.disc_lr") if discriminator else ("train.lr",),
            losses=("loss", "d_loss") if discriminator else ("loss",),
        )

    # -- config --------------------------------------------------------------------------------
    def add_defaults(self, c: ml_collections.ConfigDict) -> None:
        c.model.latent_dim = 64 if self.bottleneck == "vq" else 4  # latent channels (code size)
        c.model.downsample = 4  # f: latents are (H/f, W/f); 2, 4 or 8
        c.model.width = 64  # channels of the first stage (x1, 2, 2, 4 down the stages)
        c.model.res_blocks = 2  # ResNet blocks per stage
        c.model.codebook_size = 512  # vq: codes K
        c.model.codebook_update = "loss"  # vq: "loss" (||sg(z) − e||²) or "ema"
        c.model.commitment = 0.25  # vq: β of β·||z − sg(e)||²
        c.model.codebook_decay = 0.99  # vq: γ of the codes' moving averages (counts, EMA)
        c.model.dead_code_threshold = 1.0  # vq: restart codes used less per step; 0 = never
        c.model.kl_weight = 1e-6  # kl: the KL's weight
        # the perceptual term of the reconstruction loss (features/perceptual.py): "auto"
        # (LPIPS if eval.lpips_weights exists, else the domain classifier), "lpips",
        # "classifier" or "none"
        c.model.perceptual = "auto" if self.discriminator else "none"
        c.model.perceptual_weight = 1.0
        c.model.discriminator = self.discriminator  # a PatchGAN and the adversarial term
        c.model.disc_width = 64
        c.model.disc_layers = 3
        c.model.disc_weight = 0.8  # λ's factor on the adaptive weight (taming: 0.8)
        c.model.disc_start = 0  # the adversarial terms count from this step on
        c.model.adaptive_weight_max = 1e4  # the clip of the adaptive weight's ratio (taming)
        c.train.loss = "hinge"  # the loss table's D and G losses (core/losses.py)
        c.train.reconstruction = self.reconstruction  # "l1" or "l2"
        c.train.lr = 1e-4
        c.train.disc_lr = 1e-4
        c.train.b1 = 0.5  # taming's and latent diffusion's Adam(0.5, 0.9)
        c.train.b2 = 0.9
        # an average of the autoencoder's weights (latent diffusion's ema_decay), warmed up as
        # G's; when kept it encodes, decodes and is scored; 0 = none (both references' default)
        c.train.ema_decay = 0.0
        feature_nets.add_defaults(c)
        c.eval.lpips_weights = "~/genimg_weights/lpips_vgg.npz"  # local; never downloaded
        c.eval.best_metric = "rfid"

    def rules(self, config: ml_collections.ConfigDict) -> Rules:
        size = config.data.image_size
        own = {
            "model.downsample": (
                lambda f: f in networks.DOWNSAMPLE_FACTORS and size % f == 0,
                f"one of {networks.DOWNSAMPLE_FACTORS} dividing data.image_size={size}",
            ),
            "model.width": fields.positive(),
            "model.res_blocks": fields.positive(),
            "model.codebook_size": fields.positive(),
            "model.codebook_update": fields.one_of(quantizer.CODEBOOK_UPDATES),
            "model.commitment": fields.at_least(0),
            "model.codebook_decay": fields.in_unit(),
            "model.dead_code_threshold": fields.at_least(0),
            "model.kl_weight": fields.at_least(0),
            "model.perceptual": fields.one_of(perceptual.CHOICES),
            "model.perceptual_weight": fields.at_least(0),
            "eval.lpips_weights": (
                lambda v: (
                    config.model.perceptual != "lpips" or os.path.isfile(os.path.expanduser(v))
                ),
                (
                    "a local .npz when model.perceptual='lpips' (nothing is downloaded; README, "
                    "Autoencoders, says how to make it), or model.perceptual='auto'"
                ),
            ),
            "model.discriminator": fields.flag(),
            "model.disc_width": fields.positive(),
            "model.disc_layers": fields.positive(),
            "model.disc_weight": fields.at_least(0),
            "model.disc_start": fields.at_least(0),
            "model.adaptive_weight_max": fields.positive(),
            "train.loss": fields.one_of(("hinge", "non_saturating")),
            "train.reconstruction": fields.one_of(RECONSTRUCTIONS),
            "train.lr": fields.positive(),
            "train.disc_lr": fields.positive(),
            "train.ema_decay": fields.in_unit(),
        }
        return own | feature_nets.rules(config, optional=True) | self._best_metric_rule(config)

    def _best_metric_rule(self, config: ml_collections.ConfigDict) -> Rules:
        """Without a feature net (`eval.feature_net='none'`) there is no rFID to keep the best
        checkpoint by."""
        if config.eval.feature_net != "none":
            return {}
        names = [k for k in self.score_modes(config.data) if k != "rfid"]
        return {"eval.best_metric": fields.one_of(("", *names))}

    def shrink_for_tests(self, c: ml_collections.ConfigDict) -> None:
        c.model.width = c.model.disc_width = 8
        c.model.res_blocks = 1
        c.model.codebook_size = 16
        c.model.disc_layers = 1
        c.eval.classifier_steps = 100  # the perceptual stand-in's and rFID's feature net

    # -- networks and state --------------------------------------------------------------------
    def build(self, config: ml_collections.ConfigDict) -> tuple:
        m = config.model
        ae = networks.Autoencoder(
            widths=tuple(networks.stage_widths(m.width, m.downsample)),
            res_blocks=m.res_blocks,
            latent_channels=m.latent_dim,
            image_channels=config.data.channels,
            bottleneck=self.bottleneck,
            codebook_size=m.codebook_size,
        )
        return ae, (networks.PatchGAN(m.disc_width, m.disc_layers) if m.discriminator else None)

    def make_optimizer(self, config: ml_collections.ConfigDict) -> tuple:
        tx = state_lib.make_optimizer(config.train)
        return tx, tx

    def create_state(self, config: ml_collections.ConfigDict, rng: jax.Array) -> AutoencoderState:
        (ae, d), (tx, d_tx) = self.static_parts(config)
        ae_rng, d_rng = jax.random.split(rng)
        x = jnp.zeros((1, *state_lib.image_shape(config)))
        stats = {}
        if self.bottleneck == "vq":
            k, dim = config.model.codebook_size, config.model.latent_dim
            stats["code_count"] = jnp.zeros((k,))
            if config.model.codebook_update == "ema":
                stats["code_total"] = jnp.zeros((k, dim))
        coefficients = {name: config.model[name] for name in self.COEFFICIENTS}
        ema = config.train.ema_decay > 0
        ae_state = state_lib.create_train_state(
            ae, tx, config.train.lr, ae_rng, x, ema=ema, stats=stats, **coefficients
        )
        d_state = None
        if d is not None:
            d_state = state_lib.create_train_state(d, d_tx, config.train.disc_lr, d_rng, x)
        net = perceptual.for_config(config)
        return AutoencoderState(
            ae=ae_state, d=d_state, perceptual=None if net is None else net.weights
        )

    def apply_hparams(self, state: AutoencoderState, config) -> AutoencoderState:
        ae = state_lib.with_learning_rate(state.ae, config.train.lr)
        coefficients = {name: jnp.float32(config.model[name]) for name in self.COEFFICIENTS}
        ae = ae.replace(hparams={**ae.hparams, **coefficients})
        d = state.d
        if d is not None:
            d = state_lib.with_learning_rate(d, config.train.disc_lr)
        return state.replace(ae=ae, d=d)

    def networks(self, state: AutoencoderState) -> dict:
        nets = {"autoencoder": state.ae}
        return nets | ({"discriminator (D)": state.d} if state.d is not None else {})

    def check_data(self, config: ml_collections.ConfigDict) -> None:
        del config  # any images serve; labels are kept by `genimg encode` when present

    # -- training ------------------------------------------------------------------------------
    def step_spec(self, config: ml_collections.ConfigDict) -> AutoencoderStep:
        net = perceptual.for_config(config)
        return AutoencoderStep(
            bottleneck=self.bottleneck,
            reconstruction=config.train.reconstruction,
            latent_channels=config.model.latent_dim,
            codebook_update=config.model.codebook_update,
            loss=losses.GAN_LOSSES[config.train.loss] if config.model.discriminator else None,
            perceptual=None if net is None else net.distance,
            ema_decay=config.train.ema_decay,
        )

    def make_train_step(self, config: ml_collections.ConfigDict, axis_name: str | None):
        spec = self.step_spec(config)
        return functools.partial(autoencoder_step, spec=spec, axis_name=axis_name)

    # -- codes, reconstructions and scores -----------------------------------------------------
    def encode(self, state: AutoencoderState, x: jax.Array) -> jax.Array:
        """Images [N, H, W, C] in `value_range` -> codes int32 [N, h, w] (vq) or the
        posterior's means [N, h, w, c] (kl), with the EMA weights when kept."""
        ae = state.ae
        params = ae.inference_params
        z_e = ae.apply_fn({"params": params}, x, method="encode")
        if self.bottleneck == "vq":
            return quantizer.nearest_codes(z_e, params["codebook"])
        return jnp.split(z_e, 2, axis=-1)[0]

    def decode(self, state: AutoencoderState, latents: jax.Array) -> jax.Array:
        """Codes or latents (`encode`'s) -> images [N, H, W, C] in `value_range`."""
        ae = state.ae
        params = ae.inference_params
        if self.bottleneck == "vq":
            latents = quantizer.lookup(latents, params["codebook"])
        return ae.apply_fn({"params": params}, latents, method="decode")

    def grid_inputs(self, config: ml_collections.ConfigDict, key: jax.Array) -> dict:
        """The first test images, whose reconstructions the grids show."""
        del key
        return {"x": scoring.held_out(config, config.eval.num_samples // 2, self.value_range)}

    def sample_grids(self, state: AutoencoderState, x: jax.Array) -> dict:
        return {"reconstructions": interleaved(x, self.decode(state, self.encode(state, x)))}

    def score_modes(self, data: ml_collections.ConfigDict) -> dict[str, str]:
        modes = scoring.SCORES
        return modes | (scoring.CODEBOOK_SCORES if self.bottleneck == "vq" else {})

    def make_scorer(self, config: ml_collections.ConfigDict):
        return scoring.autoencoder_scorer(self, config)
