"""Camera effects applied to a rendered scene: exposure, contrast, white balance, lens and motion blur, noise."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter, ImageStat

from edgekd.data.synth_config import SynthConfig


def _motion_blur(pixels: np.ndarray, length: int) -> np.ndarray:
    """Horizontal box blur of `length` pixels (camera panning), via a cumulative sum along the rows."""
    pad = np.pad(pixels, ((0, 0), (length // 2 + 1, length - length // 2), (0, 0)), mode="edge")
    csum = np.cumsum(pad, axis=1, dtype=np.float32)
    width = pixels.shape[1]
    return (csum[:, length : length + width] - csum[:, :width]) / length


def _tone_lut(mean: float, contrast: float, gains: np.ndarray) -> list[int]:
    """A 3 x 256 lookup table: contrast about the image mean, then per-channel exposure x white balance."""
    levels = np.arange(256, dtype=np.float64)
    table = ((levels - mean) * contrast + mean)[None, :] * gains[:, None]
    return np.clip(np.rint(table), 0, 255).astype(np.uint8).ravel().tolist()


def camera_effects(image: Image.Image, rng: np.random.Generator, cfg: SynthConfig) -> np.ndarray:
    """uint8 HxWx3 image as a camera would deliver it."""
    scale = image.height / 375.0
    exposure = rng.uniform(*cfg.exposure_range)
    contrast = rng.uniform(*cfg.contrast_range)
    gains = exposure * (1.0 + rng.uniform(-cfg.colour_cast, cfg.colour_cast, 3))
    mean = float(np.mean(ImageStat.Stat(image).mean))
    image = image.point(_tone_lut(mean, contrast, gains))
    sigma = rng.uniform(*cfg.blur_sigma_range) * scale
    if sigma > 0.15:
        # One extended-box pass (PIL's GaussianBlur runs three): at these radii it looks the same, 3x faster.
        image = image.filter(ImageFilter.BoxBlur(radius=sigma))
    pixels = np.asarray(image, dtype=np.int16)
    if rng.random() < cfg.motion_blur_prob:
        length = int(round(rng.uniform(2, cfg.motion_blur_max_px) * scale))
        if length >= 2:
            pixels = np.rint(_motion_blur(pixels.astype(np.float32), length)).astype(np.int16)
    # Luminance noise, one draw per pixel shared by the channels (a third of the cost of per-channel noise),
    # added in int16 (half the memory traffic of float32).
    noise = rng.standard_normal(pixels.shape[:2], dtype=np.float32)
    noise *= rng.uniform(*cfg.noise_sigma_range)
    pixels = pixels + np.rint(noise).astype(np.int16)[..., None]
    np.clip(pixels, 0, 255, out=pixels)
    return pixels.astype(np.uint8)
