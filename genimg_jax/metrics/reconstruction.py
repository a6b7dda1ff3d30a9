"""How close reconstructions are to their originals, per image: PSNR and SSIM (Wang et al.
2004, with their reference code's 11×11 Gaussian window of σ = 1.5, K1 = 0.01, K2 = 0.03, over
the window positions inside the image), on images in [0, data_range]."""

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03


def psnr(x: Array, y: Array, data_range: float = 1.0) -> Array:
    """10·log10(range² / MSE) per image of [N, H, W, C] pairs: [N] dB (inf where equal)."""
    mse = jnp.mean(jnp.square(x - y).reshape(x.shape[0], -1), axis=1)
    return 10.0 * jnp.log10(data_range**2 / mse)


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """The normalised 1-D Gaussian whose outer product is the 2-D window (MATLAB's
    fspecial('gaussian', size, sigma))."""
    t = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(t**2) / (2 * sigma**2))
    return (g / g.sum()).astype(np.float32)


def _filter(x: Array, window: Array) -> Array:
    """The window's weighted means at every inside position of x [N, H, W, C], separably."""
    k = window.shape[0]
    n, h, w, c = x.shape
    flat = jnp.moveaxis(x, -1, 1).reshape(n * c, 1, h, w)
    rows = jax.lax.conv_general_dilated(flat, window.reshape(1, 1, k, 1), (1, 1), "VALID")
    out = jax.lax.conv_general_dilated(rows, window.reshape(1, 1, 1, k), (1, 1), "VALID")
    return jnp.moveaxis(out.reshape(n, c, h - k + 1, w - k + 1), 1, -1)


def ssim(x: Array, y: Array, data_range: float = 1.0) -> Array:
    """Mean SSIM per image of [N, H, W, C] pairs (H, W >= 11), averaged over channels and the
    window's positions: [N]."""
    x, y = x.astype(jnp.float32), y.astype(jnp.float32)
    window = jnp.asarray(gaussian_window())
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    mu_x, mu_y = _filter(x, window), _filter(y, window)
    var_x = _filter(x * x, window) - mu_x**2
    var_y = _filter(y * y, window) - mu_y**2
    cov = _filter(x * y, window) - mu_x * mu_y
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )
    return jnp.mean(s.reshape(s.shape[0], -1), axis=1)
