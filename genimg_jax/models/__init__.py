"""Model families by name. A family is a module exposing `build(config)`; its `kind` says which
step functions train it ("gan": a (G, D) pair, "vae": one module)."""

from collections.abc import Callable
from typing import Any, NamedTuple

import ml_collections

from genimg_jax.models import conv_vae, dcgan, mlp_vae, resnet_gan


class Family(NamedTuple):
    """How to build a family and which kind of training it needs."""

    kind: str  # "gan" | "vae"
    build: Callable[[ml_collections.ConfigDict], Any]


FAMILIES: dict[str, Family] = {
    "dcgan": Family("gan", dcgan.build),
    "resnet_gan": Family("gan", resnet_gan.build),
    "conv_vae": Family("vae", conv_vae.build),
    "mlp_vae": Family("vae", mlp_vae.build),
}


def get_family(name: str) -> Family:
    """The registered family called `name`, or a ValueError listing the known ones."""
    if name not in FAMILIES:
        raise ValueError(f"model.family={name!r} is unknown; known families: {sorted(FAMILIES)}")
    return FAMILIES[name]


VALUE_RANGE = {"gan": (-1.0, 1.0), "vae": (0.0, 1.0)}


def value_range(config: ml_collections.ConfigDict) -> tuple[float, float]:
    """Pixel range the family trains on: [-1, 1] for GANs (tanh), [0, 1] for VAEs."""
    return VALUE_RANGE[get_family(config.model.family).kind]
