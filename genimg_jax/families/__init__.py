"""The built-in model families, registered by name, and what every layer above asks of the
family a config selects: `of(config)`, its state and its step.

| `model.family` | folder        | networks                                   |
|----------------|---------------|--------------------------------------------|
| `dcgan`        | `gan/`        | DCGAN G and D (`gan/dcgan.py`)              |
| `resnet_gan`   | `gan/`        | SNGAN/BigGAN ResNet G and D (`gan/resnet.py`) |
| `stylegan2`    | `stylegan2/`  | StyleGAN2's mapping, synthesis and D        |
| `conv_vae`     | `vae/`        | a conv encoder-decoder (`vae/conv.py`)      |
| `mlp_vae`      | `vae/`        | an MLP encoder-decoder (`vae/mlp.py`)       |
| `vq_vae`       | `autoencoder/` | a conv autoencoder with a codebook         |
| `vqgan`        | `autoencoder/` | the same with a PatchGAN D                 |
| `kl_autoencoder` | `autoencoder/` | a Gaussian-latent autoencoder with a PatchGAN D |

A family of the user's own module registers itself with `core.family.register` when the module
named in `model.family_module` is imported (`get`).
"""

from collections.abc import Callable
from typing import Any

import jax
import ml_collections
from jax.sharding import Mesh

from genimg_jax.core import state as state_lib
from genimg_jax.core.family import Family, lookup, register
from genimg_jax.families.autoencoder.family import AutoencoderFamily
from genimg_jax.families.gan import dcgan, resnet
from genimg_jax.families.gan.family import GANFamily
from genimg_jax.families.stylegan2.family import StyleGAN2Family
from genimg_jax.families.vae import conv, mlp
from genimg_jax.families.vae.family import FactorVAEFamily, VAEFamily
from genimg_jax.runtime import parallel

register("dcgan", GANFamily(dcgan.build))
register("resnet_gan", GANFamily(resnet.build, minibatch_stddev=False))
register("stylegan2", StyleGAN2Family())
register("conv_vae", VAEFamily(conv.build))
register("mlp_vae", VAEFamily(mlp.build))
register("vq_vae", AutoencoderFamily("vq", discriminator=False, reconstruction="l2"))
register("vqgan", AutoencoderFamily("vq", discriminator=True, reconstruction="l1"))
register("kl_autoencoder", AutoencoderFamily("kl", discriminator=True, reconstruction="l1"))

__all__ = [
    "AutoencoderFamily",
    "FactorVAEFamily",
    "Family",
    "GANFamily",
    "StyleGAN2Family",
    "VAEFamily",
    "abstract_initial_state",
    "apply_hparams",
    "create_state",
    "get",
    "hyperparameters",
    "initial_state",
    "make_train_step",
    "of",
]


def get(name: str, module: str = "") -> Family:
    """The family registered as `name`, after importing `module` (a user's own family)."""
    return lookup(name, module)


def of(config: ml_collections.ConfigDict) -> Family:
    """The family object that trains `config` (`model.family`, resolved by its fields)."""
    return get(config.model.family, config.model.get("family_module", "")).resolve(config)


def hyperparameters(config: ml_collections.ConfigDict) -> tuple[str, ...]:
    """The fields runs may differ in and still share one compiled step: the seed and the
    family's traced hyperparameters."""
    return ("seed", *of(config).hyperparameters)


def static_key(config: ml_collections.ConfigDict) -> str:
    """`config` without its hyperparameters: equal for runs that can share programs."""
    return of(config).static_key(config)


def create_state(config: ml_collections.ConfigDict, rng: jax.Array) -> Any:
    """The initial state of the family `config` selects."""
    return of(config).create_state(config, rng)


def apply_hparams(state: Any, config: ml_collections.ConfigDict) -> Any:
    """The config's hyperparameters (learning rates, β) written into a (restored) state: the
    config is the truth when a run resumes with overrides."""
    return of(config).apply_hparams(state, config)


def initial_state(config: ml_collections.ConfigDict, mesh: Mesh) -> Any:
    """The freshly initialised state as global arrays replicated over the mesh: the layout that
    checkpoints are written and restored in, whatever the strategy or device count."""
    init = state_lib.run_keys(config.seed)["init"]
    return parallel.replicate_global(create_state(config, init), mesh)


def abstract_initial_state(config: ml_collections.ConfigDict, mesh: Mesh) -> Any:
    """`initial_state`'s structure, shapes, dtypes and sharding, not computed
    (`jax.eval_shape`): what restoring a checkpoint into it needs."""
    init = state_lib.run_keys(config.seed)["init"]
    shapes = jax.eval_shape(lambda key: create_state(config, key), init)
    sharding = parallel.replicated(mesh)
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), shapes)


def make_train_step(config: ml_collections.ConfigDict, axis_name: str | None = None) -> Callable:
    """(state, batch, key) -> (state, metrics) for the configured family. The step's randomness
    is `fold_in(key, state.step)`, so it is a function of (seed, step) alone. `axis_name`: the
    device axis when the step runs under pmap (`core.collectives`)."""
    step = of(config).make_train_step(config, axis_name)

    def train_step(state, batch, key):
        return step(state, batch, jax.random.fold_in(key, state.step))

    return train_step
