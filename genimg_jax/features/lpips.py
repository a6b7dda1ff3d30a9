"""LPIPS (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a Perceptual
Metric"), the VGG16 variant the `lpips` package and taming-transformers use:

    d(x, y) = Σ_l mean_hw Σ_c w_lc · (x̂_l − ŷ_l)²_c,   x̂_l = f_l / (‖f_l‖_c + 1e-10)

f_l the ReLU outputs of VGG16's five stages (relu1_2, relu2_2, relu3_3, relu4_3, relu5_3) of
the images scaled by the `lpips` package's ScalingLayer, w_l ≥ 0 its learned linear heads.

The weights are read from a local `.npz` (nothing is downloaded): torchvision's VGG16 state
dict (`features.N.weight`, `.bias`) and the `lpips` package's heads (`linL.model.1.weight`),
made once by `genimg lpips-weights convert VGG16_PTH LPIPS_VGG_PTH OUT.npz` where torch is
installed.
"""

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
SHIFT = np.array([-0.030, -0.088, -0.188], np.float32)  # lpips' ScalingLayer, on [-1, 1]
SCALE = np.array([0.458, 0.448, 0.450], np.float32)
HOW_TO_OBTAIN = (
    "Make it once where torch is installed: download torchvision's vgg16-397923af.pth and the "
    "lpips package's weights/v0.1/vgg.pth, then `genimg lpips-weights convert vgg16-397923af.pth "
    "vgg.pth lpips_vgg.npz`"
)


def torch_names() -> list[tuple[str, tuple[int, ...]]]:
    """(state-dict name, PyTorch-layout shape) of every tensor the file holds, in order:
    torchvision's `features.N` convolutions (N counts its ReLU and pooling layers too), then
    the five heads."""
    names, index, channels = [], 0, 3
    for stage in STAGES:
        for width in stage:
            names += [(f"features.{index}.weight", (width, channels, 3, 3))]
            names += [(f"features.{index}.bias", (width,))]
            index, channels = index + 2, width  # conv, ReLU
        index += 1  # the max pool
    names += [(f"lin{k}.model.1.weight", (1, stage[-1], 1, 1)) for k, stage in enumerate(STAGES)]
    return names


class VGG16Stages(nn.Module):
    """VGG16's convolutions: x [B, H, W, 3] -> the ReLU output of each stage's last conv."""

    @nn.compact
    def __call__(self, x: Array) -> list[Array]:
        taps = []
        for s, stage in enumerate(STAGES):
            if s:
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
            for width in stage:
                x = nn.relu(nn.Conv(width, (3, 3), padding=((1, 1), (1, 1)))(x))
            taps.append(x)
        return taps


def load_weights(path: str) -> dict:
    """The `.npz` at `path` as {"vgg": Flax params, "heads": [w_l [C_l], ...]}; raises
    ValueError naming the file, what is wrong and how to make it."""
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        raise ValueError(f"no LPIPS weights file at {path}. {HOW_TO_OBTAIN}")
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    expected = torch_names()
    wrong = [n for n, shape in expected if np.shape(arrays.get(n)) != shape]
    if wrong:
        raise ValueError(
            f"{path}: not LPIPS VGG16 weights ({len(wrong)} tensors missing or misshapen, e.g. "
            f"{wrong[0]}). {HOW_TO_OBTAIN}"
        )
    vgg, i = {}, 0
    for name, shape in expected:
        if name.startswith("features.") and name.endswith(".weight"):
            kernel = arrays[name].transpose(2, 3, 1, 0)  # OIHW -> HWIO
            bias = arrays[name.replace(".weight", ".bias")]
            vgg[f"Conv_{i}"] = {"kernel": jax.device_put(kernel), "bias": jax.device_put(bias)}
            i += 1
    heads = [
        jax.device_put(arrays[f"lin{k}.model.1.weight"].reshape(-1)) for k in range(len(STAGES))
    ]
    return {"vgg": vgg, "heads": heads}


def unit_channels(f: Array) -> Array:
    """f [..., C] divided by its norm over channels (+1e-10), as LPIPS normalises."""
    return f / (jnp.sqrt(jnp.sum(jnp.square(f), axis=-1, keepdims=True)) + 1e-10)


def distance(weights: dict, x: Array, y: Array) -> Array:
    """LPIPS between images x and y [B, H, W, C] in [-1, 1] (one channel repeated to three):
    [B]."""
    if x.shape[-1] == 1:
        x, y = (jnp.repeat(a, 3, axis=-1) for a in (x, y))
    both = (jnp.concatenate([x, y]) - SHIFT) / SCALE
    taps = VGG16Stages().apply({"params": weights["vgg"]}, both)
    total = 0.0
    for f, w in zip(taps, weights["heads"], strict=True):
        fx, fy = jnp.split(unit_channels(f), 2)
        total = total + jnp.mean(jnp.sum(jnp.square(fx - fy) * w, axis=-1), axis=(1, 2))
    return total


def convert(vgg_path: str, lpips_path: str, out: str) -> str:
    """torchvision's VGG16 `.pth` and the lpips package's `vgg.pth` -> the `.npz` of
    `load_weights` (names and PyTorch layout kept). Needs torch, imported here only."""
    try:
        import torch
    except ImportError as e:
        raise ImportError(
            "converting the LPIPS weights needs torch (once): `pip install torch`, or convert "
            "on another machine and copy the .npz"
        ) from e
    arrays = {}
    for path in (vgg_path, lpips_path):
        state = torch.load(path, map_location="cpu", weights_only=True)
        for key, value in state.items():
            arrays[key.removeprefix("net.").removeprefix("module.")] = value.float().numpy()
    wanted = {}
    for name, shape in torch_names():
        value = arrays.get(name)
        if value is None or value.shape != shape:
            raise ValueError(
                f"{vgg_path} + {lpips_path}: {name} missing or misshapen. {HOW_TO_OBTAIN}"
            )
        wanted[name] = value
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    partial = out + ".partial"
    with open(partial, "wb") as f:
        np.savez(f, **wanted)
    os.replace(partial, out)
    load_weights(out)
    return out
