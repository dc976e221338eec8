import numpy as np

from conftest import synthetic_sample
from nucseg.data import prepare_image
from nucseg.instances import instances
from nucseg.robustness import labels_at, robustness, worst_case_table


def test_robustness_scores_every_severity():
    rng = np.random.default_rng(0)
    pairs = [synthetic_sample(rng, (64, 64), 4, "gray8") for _ in range(3)]
    images = np.stack([prepare_image(im, 64) for im, _ in pairs])
    masks = np.stack([np.any(n, 0) for _, n in pairs]).astype(np.uint8)
    labels = [instances(m) for m in masks]
    perfect = lambda x: masks.astype(np.float32)          # an oracle: degradations cannot hurt it
    results, examples = robustness(perfect, images, masks, labels,
                                   {"gaussian_noise": [0.0, 0.3, 0.6], "blur": [0.0, 3.0]}, seed=1)
    assert [r["severity"] for r in results["gaussian_noise"]] == [0.0, 0.3, 0.6]
    assert all(r["unet"]["dice"] == 1 and r["unet"]["dsb"] == 1 for rows in results.values() for r in rows)
    otsu = [r["otsu"]["dice"] for r in results["gaussian_noise"]]
    assert otsu[0] > 0.95 and otsu[-1] < otsu[0]         # Otsu does suffer from noise
    table = worst_case_table(results)
    assert table["gaussian_noise"]["margin"] == 1 - otsu[-1]
    assert examples["blur"][0].shape == (64, 64) and len(examples["blur"]) == 4


def test_labels_at_keeps_label_values():
    labels = np.zeros((8, 8), np.int32)
    labels[:4, :4], labels[4:, 4:] = 3, 7
    small = labels_at(labels, 4)
    assert set(np.unique(small)) == {0, 3, 7} and small.shape == (4, 4)
