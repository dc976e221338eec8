"""Controlled image degradations for robustness tests (numpy and scipy, seeded).

Each function takes a grayscale image in [0, 1] and a severity (0: unchanged; 1 for
`low_contrast`, the fraction of contrast kept) and returns a
degraded image in [0, 1]. `degrade` then quantises to 8 bits and renormalises, as a camera and
the ingest stage would, so that e.g. low contrast costs grey levels rather than vanishing.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .data import normalize


def gaussian_noise(image, sigma, rng):
    """Additive Gaussian noise of standard deviation `sigma` (read noise)."""
    return np.clip(image + rng.normal(0.0, sigma, image.shape), 0, 1)


def poisson_noise(image, photons, rng):
    """Shot noise: the brightest pixel collects `photons` photons (fewer: noisier); 0 or inf: none."""
    if not photons or np.isinf(photons):
        return image
    return np.clip(rng.poisson(image * photons) / photons, 0, 1)


def gaussian_blur(image, sigma, rng=None):
    """Defocus as a Gaussian blur of `sigma` pixels."""
    return ndi.gaussian_filter(image, sigma, mode="reflect") if sigma > 0 else image


def linear_gradient(image, strength, rng=None):
    """Uneven illumination: a ramp from (1 - strength) to 1 across the image, plus an offset of
    strength / 2 on the bright side (stray light)."""
    ramp = np.linspace(0.0, 1.0, image.shape[1])[None, :]
    return np.clip(image * (1 - strength + strength * ramp) + 0.5 * strength * ramp, 0, 1)


def radial_gradient(image, strength, rng=None):
    """Vignetting: brightness falls towards the corners by up to `strength`."""
    cy, cx = (image.shape[0] - 1) / 2, (image.shape[1] - 1) / 2
    yy, xx = np.mgrid[: image.shape[0], : image.shape[1]]
    r = np.hypot((yy - cy) / max(cy, 1), (xx - cx) / max(cx, 1))   # sqrt(2) at the corners
    return np.clip(image * (1 - strength * np.clip(r / np.sqrt(2), 0, 1) ** 2), 0, 1)


def low_contrast(image, factor, rng=None):
    """Contrast squeezed to `factor` of its range around mid-grey (1: unchanged)."""
    return 0.5 + (image - 0.5) * factor


def salt_and_pepper(image, fraction, rng):
    """Hot and dead pixels: a `fraction` of pixels set to 1 or 0."""
    out = image.copy()
    hit = rng.random(image.shape) < fraction
    out[hit] = rng.random(hit.sum()) < 0.5
    return out


# Severities are params (params.yaml, robustness.severities); here only the functions.
DEGRADATIONS = {
    "gaussian_noise": gaussian_noise,
    "poisson_noise": poisson_noise,
    "blur": gaussian_blur,
    "linear_gradient": linear_gradient,
    "radial_gradient": radial_gradient,
    "low_contrast": low_contrast,
    "salt_and_pepper": salt_and_pepper,
}


def degrade(image, name, severity, seed=0, renormalize=True, method="percentile"):
    """Apply degradation `name` at `severity` to a grayscale image in [0, 1].

    The result is quantised to 8 bits and, with `renormalize`, normalised again by
    `nucseg.data.normalize` with `method` (what ingest does to every image, `ingest.normalization`).
    """
    if name not in DEGRADATIONS:
        raise ValueError(f"unknown degradation {name!r}: one of {', '.join(DEGRADATIONS)}")
    out = DEGRADATIONS[name](np.asarray(image, dtype=np.float64), severity, np.random.default_rng(seed))
    out = np.round(np.clip(out, 0, 1) * 255) / 255
    return normalize(out.astype(np.float32), method) if renormalize else out.astype(np.float32)
