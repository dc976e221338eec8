import numpy as np
import pytest
import yaml

from conftest import ROOT, synthetic_sample
from nucseg.data import prepare_image
from nucseg.degrade import (DEGRADATIONS, degrade, gaussian_blur, gaussian_noise, linear_gradient, low_contrast,
                            poisson_noise, radial_gradient, salt_and_pepper)

RNG = np.random.default_rng


def _image():
    image, _ = synthetic_sample(RNG(0), (64, 64), 5, "gray8")
    return prepare_image(image, 64).astype(np.float64)


def test_no_severity_is_identity():
    x = _image()
    for func, none in [(gaussian_noise, 0.0), (poisson_noise, 0), (gaussian_blur, 0.0), (linear_gradient, 0.0),
                       (radial_gradient, 0.0), (low_contrast, 1.0), (salt_and_pepper, 0.0)]:
        np.testing.assert_allclose(func(x, none, RNG(1)), x, err_msg=func.__name__)


def test_noise_levels():
    x = np.full((200, 200), 0.5)
    assert gaussian_noise(x, 0.1, RNG(0)).std() == pytest.approx(0.1, rel=0.05)
    # shot noise: variance of counts equals their mean, so std = sqrt(0.5 * photons) / photons
    assert poisson_noise(x, 50, RNG(0)).std() == pytest.approx(np.sqrt(25) / 50, rel=0.05)
    salted = salt_and_pepper(x, 0.1, RNG(0))
    hit = salted != 0.5
    assert hit.mean() == pytest.approx(0.1, abs=0.01)
    assert set(np.unique(salted[hit])) == {0.0, 1.0}                     # dead or hot
    assert (salted[hit] == 1).mean() == pytest.approx(0.5, abs=0.05)


def test_blur_and_illumination_by_hand():
    x = np.zeros((21, 21))
    x[10, 10] = 1
    for sigma in (1.0, 2.0):
        # a point's image is the sampled Gaussian: exp(-d^2 / 2 sigma^2) relative to its centre
        blurred = gaussian_blur(x, sigma)
        assert blurred.sum() == pytest.approx(1.0)
        assert blurred[10, 11] / blurred[10, 10] == pytest.approx(np.exp(-0.5 / sigma**2))
        assert blurred[12, 11] / blurred[10, 10] == pytest.approx(np.exp(-5 / 2 / sigma**2))
    # sigma 1, scipy's radius of 4 sigma: centre 1 / S^2, S = sum of exp(-k^2 / 2) for k in -4..4
    S = 1 + 2 * (np.exp(-0.5) + np.exp(-2) + np.exp(-4.5) + np.exp(-8))
    assert gaussian_blur(x, 1.0)[10, 10] == pytest.approx(1 / S**2)
    flat = np.full((4, 5), 0.4)
    ramp = linear_gradient(flat, 0.5)
    np.testing.assert_allclose(ramp[:, 0], 0.4 * 0.5)                  # dim side: halved
    np.testing.assert_allclose(ramp[:, -1], 0.4 + 0.25)                # bright side: stray light
    vignette = radial_gradient(np.ones((21, 21)), 0.8)
    assert vignette[10, 10] == 1 and vignette[0, 0] == pytest.approx(0.2)
    np.testing.assert_allclose(low_contrast(np.array([0.0, 0.5, 1.0]), 0.1), [0.45, 0.5, 0.55])


def test_degrade_is_seeded_quantised_and_renormalised():
    x = _image()
    a = degrade(x, "gaussian_noise", 0.2, seed=3)
    np.testing.assert_array_equal(a, degrade(x, "gaussian_noise", 0.2, seed=3))
    assert not np.array_equal(a, degrade(x, "gaussian_noise", 0.2, seed=4))
    squeezed = degrade(x, "low_contrast", 0.05, renormalize=False)
    assert len(np.unique(squeezed)) <= 14          # 5% of 255 grey levels survive the 8-bit camera
    stretched = degrade(x, "low_contrast", 0.05)
    assert stretched.min() == 0 and stretched.max() == 1
    with pytest.raises(ValueError, match="unknown degradation"):
        degrade(x, "fog", 1)


def test_params_name_known_degradations_with_none_first():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())["robustness"]
    assert set(params["degradations"]) <= set(DEGRADATIONS)
    x = _image()
    for name in params["degradations"]:
        severities = params["severities"][name]
        assert len(severities) >= 5
        np.testing.assert_allclose(degrade(x, name, severities[0], renormalize=False), np.round(x * 255) / 255,
                                   atol=1e-6, err_msg=name)


def test_renormalised_as_ingest_normalises():
    """With ingest.normalization none, a low-contrast image stays low in contrast (percentile
    normalisation would stretch it back to [0, 1])."""
    image = np.linspace(0.0, 1.0, 64 * 64).reshape(64, 64)
    stretched = degrade(image, "low_contrast", 0.2)
    kept = degrade(image, "low_contrast", 0.2, method="none")
    assert stretched.max() - stretched.min() == pytest.approx(1.0)
    assert kept.max() - kept.min() == pytest.approx(0.2, abs=2 / 255)

