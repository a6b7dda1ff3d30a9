"""The FID Inception-v3 (TensorFlow's 2015-12-05 graph, as ported by pytorch-fid) in Flax Linen,
for FID/KID/precision-recall on natural RGB images: pool3 features [B, 2048] and the 1008-way
logits head.

The architecture is torchvision's Inception3 with pytorch-fid's FID blocks: Mixed_5b-5d
(`FIDInceptionA`), Mixed_6b-6e (`FIDInceptionC`) and Mixed_7b (`FIDInceptionE_1`) average-pool
their pool branch with count_include_pad=False, as TF does; Mixed_7c (`FIDInceptionE_2`)
max-pools it. Every conv is conv (no bias) - BatchNorm (eps 1e-3, inference statistics only) -
ReLU. Images in [-1, 1] are resized to 299×299 bilinearly (half-pixel centres, no antialiasing:
`torch.nn.functional.interpolate(..., mode="bilinear", align_corners=False)`, as pytorch-fid).

Weights are never downloaded here: `load_weights` reads a local `.npz` whose keys are pytorch-fid
state-dict names in PyTorch layout (`Conv2d_1a_3x3.conv.weight` [32, 3, 3, 3], ...,
`fc.weight` [1008, 2048]); `python -m genimg_jax.features.inception convert IN.pth OUT.npz`
makes one from pytorch-fid's checkpoint (torch needed for that step only). See
docs/inception_weights.md.
"""

import functools
import os
import zipfile
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

Array = jax.Array
PyTree = Any

INPUT_SIZE = 299
FEATURE_DIM = 2048  # pool3
NUM_LOGITS = 1008  # the 2015-12-05 graph's classes (1000 ImageNet classes and 8 unused)
BN_EPSILON = 1e-3
DEFAULT_BATCH = 50  # images per forward pass in `features`
FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
# Documentation only: nothing in genimg_jax fetches anything.
FID_WEIGHTS_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + FID_WEIGHTS_FILE
)
HOW_TO_OBTAIN = (
    "To make the file, on a machine with internet: `pip install torch pytorch-fid`, then "
    f"download {FID_WEIGHTS_FILE} ({FID_WEIGHTS_URL}; pytorch-fid also caches it under "
    "~/.cache/torch/hub/checkpoints/ on first use) and run "
    f"`python -m genimg_jax.features.inception convert {FID_WEIGHTS_FILE} inception_fid.npz`; "
    "copy the .npz here and set eval.inception_weights to its path "
    "(docs/inception_weights.md). genimg_jax never downloads it."
)
_IGNORED_SUFFIX = ".num_batches_tracked"  # BatchNorm's step counter: not a weight
_LISTED = 10  # keys shown per kind of problem in an error message


# --------------------------------------------------------------------------------------------
# The network (NHWC; names follow torchvision / pytorch-fid so state-dict keys map one to one)


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


class BasicConv2d(nn.Module):
    """conv (no bias) -> BatchNorm(eps 1e-3, running statistics) -> ReLU; padding as PyTorch's
    symmetric (pad_h, pad_w)."""

    features: int
    kernel_size: int | tuple[int, int]
    strides: int = 1
    padding: int | tuple[int, int] = 0

    @nn.compact
    def __call__(self, x: Array) -> Array:
        ph, pw = _pair(self.padding)
        x = nn.Conv(
            self.features,
            _pair(self.kernel_size),
            strides=_pair(self.strides),
            padding=((ph, ph), (pw, pw)),
            use_bias=False,
            name="conv",
        )(x)
        x = nn.BatchNorm(use_running_average=True, epsilon=BN_EPSILON, name="bn")(x)
        return nn.relu(x)


def _avg_pool_3x3(x: Array) -> Array:
    """3×3, stride 1, pad 1, averaging only the real (unpadded) inputs, as TF does."""
    return nn.avg_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3_s2(x: Array) -> Array:
    return nn.max_pool(x, (3, 3), (2, 2))


class InceptionA(nn.Module):
    """pytorch-fid's FIDInceptionA (Mixed_5b-5d): [B, H, W, C] -> [B, H, W, 224 + pool]."""

    pool_features: int

    @nn.compact
    def __call__(self, x: Array) -> Array:
        b1 = BasicConv2d(64, 1, name="branch1x1")(x)
        b5 = BasicConv2d(48, 1, name="branch5x5_1")(x)
        b5 = BasicConv2d(64, 5, padding=2, name="branch5x5_2")(b5)
        b3 = BasicConv2d(64, 1, name="branch3x3dbl_1")(x)
        b3 = BasicConv2d(96, 3, padding=1, name="branch3x3dbl_2")(b3)
        b3 = BasicConv2d(96, 3, padding=1, name="branch3x3dbl_3")(b3)
        bp = BasicConv2d(self.pool_features, 1, name="branch_pool")(_avg_pool_3x3(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
    """torchvision's InceptionB (Mixed_6a, grid reduction): [B, 35, 35, 288] -> [B, 17, 17, 768]."""

    @nn.compact
    def __call__(self, x: Array) -> Array:
        b3 = BasicConv2d(384, 3, strides=2, name="branch3x3")(x)
        bd = BasicConv2d(64, 1, name="branch3x3dbl_1")(x)
        bd = BasicConv2d(96, 3, padding=1, name="branch3x3dbl_2")(bd)
        bd = BasicConv2d(96, 3, strides=2, name="branch3x3dbl_3")(bd)
        return jnp.concatenate([b3, bd, _max_pool_3x3_s2(x)], axis=-1)


class InceptionC(nn.Module):
    """pytorch-fid's FIDInceptionC (Mixed_6b-6e): [B, 17, 17, 768] -> [B, 17, 17, 768]."""

    channels_7x7: int

    @nn.compact
    def __call__(self, x: Array) -> Array:
        c7 = self.channels_7x7
        b1 = BasicConv2d(192, 1, name="branch1x1")(x)
        b7 = BasicConv2d(c7, 1, name="branch7x7_1")(x)
        b7 = BasicConv2d(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(b7)
        b7 = BasicConv2d(192, (7, 1), padding=(3, 0), name="branch7x7_3")(b7)
        bd = BasicConv2d(c7, 1, name="branch7x7dbl_1")(x)
        bd = BasicConv2d(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(bd)
        bd = BasicConv2d(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(bd)
        bd = BasicConv2d(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(bd)
        bd = BasicConv2d(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(bd)
        bp = BasicConv2d(192, 1, name="branch_pool")(_avg_pool_3x3(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
    """torchvision's InceptionD (Mixed_7a, grid reduction): [B, 17, 17, 768] -> [B, 8, 8, 1280]."""

    @nn.compact
    def __call__(self, x: Array) -> Array:
        b3 = BasicConv2d(192, 1, name="branch3x3_1")(x)
        b3 = BasicConv2d(320, 3, strides=2, name="branch3x3_2")(b3)
        b7 = BasicConv2d(192, 1, name="branch7x7x3_1")(x)
        b7 = BasicConv2d(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
        b7 = BasicConv2d(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
        b7 = BasicConv2d(192, 3, strides=2, name="branch7x7x3_4")(b7)
        return jnp.concatenate([b3, b7, _max_pool_3x3_s2(x)], axis=-1)


class InceptionE(nn.Module):
    """pytorch-fid's FIDInceptionE_1 (pool="avg", Mixed_7b) and FIDInceptionE_2 (pool="max",
    Mixed_7c): [B, 8, 8, C] -> [B, 8, 8, 2048]."""

    pool: str  # "avg" (count_include_pad=False) or "max", both 3×3 stride 1 pad 1

    @nn.compact
    def __call__(self, x: Array) -> Array:
        b1 = BasicConv2d(320, 1, name="branch1x1")(x)
        b3 = BasicConv2d(384, 1, name="branch3x3_1")(x)
        b3 = jnp.concatenate(
            [
                BasicConv2d(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(b3),
                BasicConv2d(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(b3),
            ],
            axis=-1,
        )
        bd = BasicConv2d(448, 1, name="branch3x3dbl_1")(x)
        bd = BasicConv2d(384, 3, padding=1, name="branch3x3dbl_2")(bd)
        bd = jnp.concatenate(
            [
                BasicConv2d(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(bd),
                BasicConv2d(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(bd),
            ],
            axis=-1,
        )
        if self.pool == "avg":
            pooled = _avg_pool_3x3(x)
        elif self.pool == "max":
            pooled = nn.max_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)))
        else:
            raise ValueError(f"pool={self.pool!r} must be 'avg' or 'max'")
        bp = BasicConv2d(192, 1, name="branch_pool")(pooled)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class InceptionV3(nn.Module):
    """The FID Inception-v3: x [B, 299, 299, 3] in [-1, 1] -> pool3 [B, 2048], or
    (pool3, logits [B, 1008]) with logits=True. Inference only (BatchNorm statistics are
    weights). Any size from 75×75 up runs, but FID's features are defined at 299×299."""

    @nn.compact
    def __call__(self, x: Array, logits: bool = False) -> Array | tuple[Array, Array]:
        x = BasicConv2d(32, 3, strides=2, name="Conv2d_1a_3x3")(x)  # 149
        x = BasicConv2d(32, 3, name="Conv2d_2a_3x3")(x)  # 147
        x = BasicConv2d(64, 3, padding=1, name="Conv2d_2b_3x3")(x)  # 147
        x = _max_pool_3x3_s2(x)  # 73
        x = BasicConv2d(80, 1, name="Conv2d_3b_1x1")(x)  # 73
        x = BasicConv2d(192, 3, name="Conv2d_4a_3x3")(x)  # 71
        x = _max_pool_3x3_s2(x)  # 35
        x = InceptionA(32, name="Mixed_5b")(x)  # 256 channels
        x = InceptionA(64, name="Mixed_5c")(x)  # 288
        x = InceptionA(64, name="Mixed_5d")(x)  # 288
        x = InceptionB(name="Mixed_6a")(x)  # 17×17×768
        x = InceptionC(128, name="Mixed_6b")(x)
        x = InceptionC(160, name="Mixed_6c")(x)
        x = InceptionC(160, name="Mixed_6d")(x)
        x = InceptionC(192, name="Mixed_6e")(x)
        x = InceptionD(name="Mixed_7a")(x)  # 8×8×1280
        x = InceptionE("avg", name="Mixed_7b")(x)  # 8×8×2048
        x = InceptionE("max", name="Mixed_7c")(x)
        pool3 = jnp.mean(x, axis=(1, 2))  # [B, 2048]
        if not logits:
            return pool3
        return pool3, nn.Dense(NUM_LOGITS, name="fc")(pool3)


_MODEL = InceptionV3()


# --------------------------------------------------------------------------------------------
# Weights: pytorch-fid state-dict names (PyTorch layout) <-> the Flax variables tree

_TORCH_LEAF = {"kernel": "weight", "scale": "weight", "bias": "bias"}
_TORCH_STAT = {"mean": "running_mean", "var": "running_var"}
# State-dict order within a module (first matching ending wins).
_LEAF_ORDER = (
    "conv.weight",
    "bn.weight",
    "bn.bias",
    "bn.running_mean",
    "bn.running_var",
    "weight",
    "bias",
)


def _torch_shape(flax_shape: tuple[int, ...]) -> tuple[int, ...]:
    """HWIO conv kernel -> OIHW; Dense [in, out] -> Linear [out, in]; vectors unchanged."""
    if len(flax_shape) == 4:
        h, w, i, o = flax_shape
        return (o, i, h, w)
    return tuple(reversed(flax_shape))


def _to_flax(array: np.ndarray) -> np.ndarray:
    """A PyTorch-layout array -> its Flax layout (the inverse of `_torch_shape`)."""
    if array.ndim == 4:
        return np.ascontiguousarray(array.transpose(2, 3, 1, 0))  # OIHW -> HWIO
    return np.ascontiguousarray(array.T)


@functools.cache
def _layout() -> dict[str, tuple[tuple[str, ...], tuple[int, ...]]]:
    """torch key -> (Flax path (collection, *modules, leaf), torch-layout shape), in state-dict
    order, read off `InceptionV3.init` (traced for shapes only, nothing computed)."""
    x = jax.ShapeDtypeStruct((1, INPUT_SIZE, INPUT_SIZE, 3), jnp.float32)
    shapes = jax.eval_shape(functools.partial(_MODEL.init, logits=True), jax.random.key(0), x)
    modules: dict[tuple[str, ...], int] = {}  # module path -> first-seen position
    entries = []
    for path, leaf in traverse_util.flatten_dict(shapes).items():
        collection, *module, name = path
        if collection == "params":
            key = ".".join([*module, _TORCH_LEAF[name]])
        elif collection == "batch_stats":
            key = ".".join([*module, _TORCH_STAT[name]])
        else:
            raise AssertionError(f"unexpected collection {collection!r}")
        owner = tuple(module[:-1]) if module[-1] in ("conv", "bn") else tuple(module)
        modules.setdefault(owner, len(modules))
        rank = next(i for i, end in enumerate(_LEAF_ORDER) if key.endswith(end))
        entries.append(((modules[owner], rank, key), key, path, _torch_shape(leaf.shape)))
    entries.sort(key=lambda e: e[0])
    return {key: (path, shape) for _, key, path, shape in entries}


def expected_shapes() -> dict[str, tuple[int, ...]]:
    """Every tensor a weights file must hold: pytorch-fid state-dict name -> PyTorch-layout
    shape (OIHW convs, [out, in] fc), in state-dict order; computed from `InceptionV3.init`."""
    return {key: shape for key, (_, shape) in _layout().items()}


def _listing(keys: Sequence[str]) -> str:
    shown = ", ".join(keys[:_LISTED])
    return shown + (f", ... ({len(keys) - _LISTED} more)" if len(keys) > _LISTED else "")


def _validated(arrays: Mapping[str, Any], source: str) -> dict[str, np.ndarray]:
    """Checks arrays (torch key -> array-like) against `expected_shapes`: every key present,
    none extra (BatchNorm's num_batches_tracked ignored), shapes equal, floating and finite.
    Returns float32 NumPy arrays in PyTorch layout, or raises ValueError naming `source`, each
    offending key and how to get a correct file."""
    expected = expected_shapes()
    given = {k: v for k, v in arrays.items() if not k.endswith(_IGNORED_SUFFIX)}
    missing = [k for k in expected if k not in given]
    extra = sorted(k for k in given if k not in expected)
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_listing(missing)}")
    if extra:
        problems.append(f"{len(extra)} unexpected key(s): {_listing(extra)}")
    wrong = [
        f"{k} has shape {tuple(np.shape(given[k]))}, expected {expected[k]}"
        for k in expected
        if k in given and tuple(np.shape(given[k])) != expected[k]
    ]
    if wrong:
        problems.append(f"{len(wrong)} wrong shape(s): " + "; ".join(wrong[:_LISTED]))
    out = {}
    if not problems:
        for k in expected:
            value = np.asarray(given[k])
            if not np.issubdtype(value.dtype, np.floating):
                problems.append(f"{k} has dtype {value.dtype}, expected floating point")
            elif not np.isfinite(value).all():
                problems.append(f"{k} holds NaN or infinite values")
            else:
                out[k] = value.astype(np.float32)
    if problems:
        hint = ""
        if any(k.startswith("AuxLogits.") for k in extra) or np.shape(given.get("fc.weight")) == (
            1000,
            FEATURE_DIM,
        ):
            hint = (
                " These look like torchvision's ImageNet Inception-v3 weights (1000 classes, "
                "aux head): a different network whose FIDs are not comparable; use "
                f"pytorch-fid's {FID_WEIGHTS_FILE}."
            )
        raise ValueError(
            f"{source}: not the FID Inception-v3 weights ({len(expected)} tensors named as in "
            f"pytorch-fid's state dict): " + "; ".join(problems) + "." + hint + " " + HOW_TO_OBTAIN
        )
    return out


def _variables(arrays: Mapping[str, np.ndarray]) -> PyTree:
    """Validated PyTorch-layout arrays -> {"params": ..., "batch_stats": ...} of jax arrays."""
    flat = {path: jax.device_put(_to_flax(arrays[key])) for key, (path, _) in _layout().items()}
    return traverse_util.unflatten_dict(flat)


def load_weights(path: str | os.PathLike) -> PyTree:
    """Reads a local `.npz` of pytorch-fid's Inception weights (keys: state-dict names, values
    in PyTorch layout) into Flax variables {"params": ..., "batch_stats": ...}.

    Raises FileNotFoundError if there is no file at `path`, and ValueError (naming the file,
    the missing, unexpected or misshapen keys and how to make a correct file) otherwise.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Inception weights file not found: {os.path.abspath(path)!r}. {HOW_TO_OBTAIN}"
        )
    if path.endswith((".pth", ".pt")):
        raise ValueError(
            f"{path}: a PyTorch checkpoint; genimg_jax reads a converted .npz. Convert it where "
            f"torch is installed: `python -m genimg_jax.features.inception convert {path} "
            "inception_fid.npz` (docs/inception_weights.md)."
        )
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: not a readable .npz file ({e}). {HOW_TO_OBTAIN}") from e
    if not hasattr(loaded, "files"):  # np.load gave one .npy array, not an archive
        raise ValueError(f"{path}: holds a single array, not an .npz archive. {HOW_TO_OBTAIN}")
    with loaded:
        arrays = {key: loaded[key] for key in loaded.files}
    return _variables(_validated(arrays, path))


# --------------------------------------------------------------------------------------------
# Features


def prepare_images(images: Array) -> Array:
    """images [B, H, W, C] (C = 1 or 3; float in [-1, 1], or uint8 in [0, 255]) -> float32
    [B, 299, 299, 3] in [-1, 1]: grey tiled to RGB, resized bilinearly (half-pixel centres, no
    antialiasing, like pytorch-fid's F.interpolate(..., align_corners=False))."""
    x = jnp.asarray(images)
    x = x.astype(jnp.float32) / 127.5 - 1.0 if x.dtype == jnp.uint8 else x.astype(jnp.float32)
    if x.shape[-1] == 1:
        x = jnp.tile(x, (1, 1, 1, 3))
    if x.shape[1:3] != (INPUT_SIZE, INPUT_SIZE):
        shape = (x.shape[0], INPUT_SIZE, INPUT_SIZE, 3)
        x = jax.image.resize(x, shape, method="bilinear", antialias=False)
    return x


@jax.jit
def _forward(variables: PyTree, images: Array) -> tuple[Array, Array]:
    """One batch [B, H, W, C] -> (pool3 [B, 2048], logits [B, 1008]); compiled once per batch
    shape (the logits head costs ~0.04% of the network, so `features` shares this program)."""
    return _MODEL.apply(variables, prepare_images(images), logits=True)


def _check_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] not in (1, 3) or len(images) == 0:
        raise ValueError(f"images must be [N >= 1, H, W, C] with C in (1, 3), got {images.shape}")
    if images.dtype == np.uint8:
        return images
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(f"images must be float in [-1, 1] or uint8, got {images.dtype}")
    peak = float(np.max(np.abs(images)))
    if not peak <= 1.0 + 1e-3:  # also catches NaN
        raise ValueError(
            f"float images must lie in [-1, 1] (a GAN's tanh range; map [0, 1] images with "
            f"2x - 1), got max |x| = {peak}"
        )
    return images.astype(np.float32)


def features_and_logits(
    variables: PyTree, images: np.ndarray, batch_size: int = DEFAULT_BATCH
) -> tuple[np.ndarray, np.ndarray]:
    """(pool3 features [N, 2048], logits [N, 1008]) of images [N, H, W, C] (float in [-1, 1]
    or uint8; C = 1 or 3), `batch_size` at a time through one compiled program (the last batch
    is zero-padded). Softmax the logits for the Inception Score."""
    images = _check_images(images)
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    n = len(images)
    size = min(batch_size, n)
    padding = np.zeros((-n % size, *images.shape[1:]), images.dtype)
    padded = np.concatenate([images, padding])
    feats, logits = [], []
    for i in range(0, len(padded), size):
        f, l = _forward(variables, padded[i : i + size])
        feats.append(np.asarray(f))
        logits.append(np.asarray(l))
    return np.concatenate(feats)[:n], np.concatenate(logits)[:n]


def features(variables: PyTree, images: np.ndarray, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
    """pool3 features [N, 2048] (float32, non-negative) of images [N, H, W, C] in [-1, 1] (or
    uint8), for `evaluate.frechet_distance_from_features` and KID."""
    return features_and_logits(variables, images, batch_size)[0]


# --------------------------------------------------------------------------------------------
# Conversion from pytorch-fid's checkpoint (the only place torch is ever imported)


def convert(input_path: str | os.PathLike, output_path: str | os.PathLike) -> str:
    """pytorch-fid's `.pth` state dict -> the `.npz` that `load_weights` reads (same names,
    PyTorch layout, float32; num_batches_tracked dropped). Validates every key and shape before
    writing; writes atomically. Needs torch, imported here and nowhere else. Returns the path."""
    try:
        import torch
    except ImportError as e:
        raise ImportError(
            "converting a PyTorch checkpoint needs torch (for this one-off conversion only; "
            "genimg_jax never needs it otherwise): `pip install torch` (the CPU wheel is "
            "enough), or convert on another machine and copy the .npz."
        ) from e
    input_path, output_path = os.fspath(input_path), os.fspath(output_path)
    if not os.path.isfile(input_path):
        raise FileNotFoundError(
            f"no checkpoint at {os.path.abspath(input_path)!r}. {HOW_TO_OBTAIN}"
        )
    state = torch.load(input_path, map_location="cpu", weights_only=True)
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise TypeError(f"{input_path}: expected a state dict, got {type(state).__name__}")
    if state and all(k.startswith("module.") for k in state):  # saved from DataParallel
        state = {k[len("module.") :]: v for k, v in state.items()}
    not_tensors = [k for k, v in state.items() if not torch.is_tensor(v)]
    if not_tensors:
        raise ValueError(f"{input_path}: entries that are not tensors: {_listing(not_tensors)}")
    arrays = _validated(
        {k: v.detach().to("cpu", torch.float32).numpy() for k, v in state.items()}, input_path
    )
    directory = os.path.dirname(os.path.abspath(output_path))
    os.makedirs(directory, exist_ok=True)
    partial = output_path + ".partial"
    with open(partial, "wb") as f:
        np.savez(f, **arrays)
    os.replace(partial, output_path)
    return output_path
