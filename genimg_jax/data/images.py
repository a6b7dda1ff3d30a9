"""Images to the model's geometry: decoding a file (any mode, EXIF orientation applied) and fitting
uint8 images to a square size and channel count. Used by the input pipeline and by the builders
that prepare a user's own images."""

import numpy as np
from PIL import Image, ImageOps

from genimg_jax.core.errors import GenimgError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")


class ImageError(GenimgError):
    """Images cannot be read or fitted; the message names the file or the shapes."""

    exit_code = 2


def decode(path: str, channels: int) -> np.ndarray:
    """The image file at `path` as uint8 [H, W, channels]: EXIF orientation applied, the first
    frame of an animation, 16-bit scaled to 8, palette/CMYK/alpha converted (alpha dropped)."""
    with Image.open(path) as image:
        image.load()  # truncated or damaged files fail here
        image = ImageOps.exif_transpose(image)
        if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit greyscale: keep the top byte
            pixels = np.asarray(image, np.uint32)
            top = 65535 if image.mode != "I" or pixels.max() > 255 else 255
            image = Image.fromarray((pixels * 255 // max(top, 1)).astype(np.uint8))
        pixels = np.asarray(image.convert("L" if channels == 1 else "RGB"))
    return pixels[..., None] if channels == 1 else pixels


def fit_images(images: np.ndarray, size: int, channels: int) -> np.ndarray:
    """uint8 [B, h, w, c] -> uint8 [B, size, size, channels]: zero-pad when smaller (MNIST 28 ->
    32), else centre-crop to a square and resize with area averaging; grey -> RGB by tiling."""
    _, h, w, c = images.shape
    if c != channels:
        if c != 1:
            raise ImageError(f"images have {c} channels; data.channels={channels} cannot be made")
        images = np.repeat(images, channels, axis=-1)
    if h <= size and w <= size:
        top, left = (size - h) // 2, (size - w) // 2
        if (h, w) == (size, size):
            return images
        return np.pad(images, ((0, 0), (top, size - h - top), (left, size - w - left), (0, 0)))
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = images[:, top : top + side, left : left + side]
    return np.stack([_resize(im, size) for im in square])


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    squeeze = image.shape[-1] == 1
    pil = Image.fromarray(image[..., 0] if squeeze else image)
    out = np.asarray(pil.resize((size, size), Image.Resampling.BOX))
    return out[..., None] if squeeze else out
