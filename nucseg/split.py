"""Seeded train/val/test split over image ids."""
from __future__ import annotations

import numpy as np


def split_ids(ids, val=0.1, test=0.1, seed=0):
    """Shuffle sorted `ids` with `seed` and cut them into train, val and test lists.

    The result depends only on the set of ids and the seed, not on the order they come in.
    Each list is returned sorted.
    """
    ids = sorted(ids)
    if not 0 <= val < 1 or not 0 <= test < 1 or val + test >= 1:
        raise ValueError(f"val={val} and test={test} must be fractions with val + test < 1")
    order = np.random.default_rng(seed).permutation(len(ids))
    n_test, n_val = round(test * len(ids)), round(val * len(ids))
    shuffled = [ids[i] for i in order]
    test_ids = shuffled[:n_test]
    val_ids = shuffled[n_test:n_test + n_val]
    train_ids = shuffled[n_test + n_val:]
    return sorted(train_ids), sorted(val_ids), sorted(test_ids)
