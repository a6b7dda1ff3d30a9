"""LPIPS (features/lpips.py) against its definition written out in NumPy on random weights:
torchvision's VGG16 convolutions in PyTorch layout, the lpips package's scaling, unit-normalised
channels, non-negative heads and spatial means; the weights file's checks and its converter
from PyTorch state dicts (when torch is installed)."""

import jax
import numpy as np
import pytest

from genimg_jax.cli import main
from genimg_jax.features import lpips


def _random_weights(rng) -> dict[str, np.ndarray]:
    arrays = {}
    for name, shape in lpips.torch_names():
        if name.startswith("lin"):
            arrays[name] = rng.uniform(0.0, 1.0, size=shape).astype(np.float32)
        elif name.endswith(".weight"):
            fan_in = shape[1] * 9
            arrays[name] = (rng.normal(size=shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        else:
            arrays[name] = rng.normal(scale=0.1, size=shape).astype(np.float32)
    return arrays


def _np_conv3x3(x, weight, bias):
    """PyTorch's conv2d(padding=1) of x [H, W, I] with weight [O, I, 3, 3]: [H, W, O]."""
    h, w, _ = x.shape
    padded = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    out = np.zeros((h, w, weight.shape[0]))
    for dy in range(3):
        for dx in range(3):
            out += padded[dy : dy + h, dx : dx + w] @ weight[:, :, dy, dx].T
    return out + bias


def _np_lpips(arrays, x, y):
    """The lpips package's forward (VGG16, lpips=True, spatial=False) for one pair [H, W, 3]."""
    shift = np.array([-0.030, -0.088, -0.188])
    scale = np.array([0.458, 0.448, 0.450])
    feats = []
    for image in (x, y):
        h, taps, index = (image - shift) / scale, [], 0
        for s, stage in enumerate(lpips.STAGES):
            if s:  # MaxPool2d(2, 2)
                hh, ww = h.shape[0] // 2, h.shape[1] // 2
                h = h[: 2 * hh, : 2 * ww].reshape(hh, 2, ww, 2, -1).max(axis=(1, 3))
            for _ in stage:
                w, b = arrays[f"features.{index}.weight"], arrays[f"features.{index}.bias"]
                h = np.maximum(_np_conv3x3(h, w, b), 0.0)
                index += 2
            index += 1
            taps.append(h)
        feats.append(taps)
    total = 0.0
    for k, (fx, fy) in enumerate(zip(*feats, strict=True)):
        nx = fx / (np.sqrt((fx**2).sum(-1, keepdims=True)) + 1e-10)
        ny = fy / (np.sqrt((fy**2).sum(-1, keepdims=True)) + 1e-10)
        head = arrays[f"lin{k}.model.1.weight"].reshape(-1)
        total += (((nx - ny) ** 2) @ head).mean()
    return total


def test_lpips_matches_its_definition_on_random_weights(tmp_path):
    rng = np.random.default_rng(0)
    arrays = _random_weights(rng)
    path = str(tmp_path / "lpips.npz")
    np.savez(path, **arrays)
    weights = lpips.load_weights(path)
    x = rng.uniform(-1, 1, size=(2, 32, 32, 3)).astype(np.float32)
    y = np.clip(x + rng.normal(scale=0.3, size=x.shape), -1, 1).astype(np.float32)
    distance = jax.jit(lpips.distance)  # as the perceptual loss runs it: one program
    got = np.asarray(distance(weights, x, y))
    expected = [
        _np_lpips({k: v.astype(np.float64) for k, v in arrays.items()}, x[i], y[i])
        for i in range(2)
    ]
    np.testing.assert_allclose(got, expected, rtol=1e-4)
    np.testing.assert_allclose(distance(weights, x, x), 0.0, atol=1e-6)
    gray = x[..., :1]  # one channel is read as three equal ones
    np.testing.assert_allclose(
        distance(weights, gray, y[..., :1]),
        distance(weights, np.repeat(gray, 3, -1), np.repeat(y[..., :1], 3, -1)),
        rtol=1e-6,
    )


def test_a_wrong_weights_file_is_named_with_the_fix(tmp_path, capsys):
    path = str(tmp_path / "bad.npz")
    np.savez(path, **{"features.0.weight": np.zeros((64, 3, 3, 3), np.float32)})
    with pytest.raises(ValueError, match="not LPIPS VGG16 weights.*lpips-weights convert"):
        lpips.load_weights(path)
    assert main.main(["genimg", "lpips-weights", "check", path]) == 1
    assert "not LPIPS VGG16 weights" in capsys.readouterr().err


def test_the_converter_joins_torchvisions_vgg16_and_the_lpips_heads(tmp_path):
    torch = pytest.importorskip("torch", reason="the converter needs torch (not installed)")
    arrays = _random_weights(np.random.default_rng(1))
    vgg = {k: torch.from_numpy(v) for k, v in arrays.items() if k.startswith("features.")}
    vgg["classifier.0.weight"] = torch.zeros(4, 4)  # torchvision's head: not LPIPS', ignored
    heads = {k: torch.from_numpy(v) for k, v in arrays.items() if k.startswith("lin")}
    torch.save(vgg, tmp_path / "vgg16.pth")
    torch.save(heads, tmp_path / "vgg.pth")
    out = str(tmp_path / "lpips.npz")
    argv = [
        "genimg",
        "lpips-weights",
        "convert",
        str(tmp_path / "vgg16.pth"),
        str(tmp_path / "vgg.pth"),
        out,
    ]
    assert main.main(argv) == 0
    with np.load(out) as f:
        assert sorted(f.files) == sorted(n for n, _ in lpips.torch_names())
        for name in f.files:
            np.testing.assert_array_equal(f[name], arrays[name])
