"""otsu: the baseline, one Otsu threshold per image."""
import argparse

import numpy as np

from nucseg.io import save_npy
from nucseg.otsu import otsu_batch
from nucseg.params import load_params, run


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    params = load_params("otsu")
    masks = otsu_batch(np.load(args.images), invert_above=params["invert_above"])
    save_npy(args.out, masks)
    print(f"otsu: {masks.shape}, foreground {masks.mean():.3f} -> {args.out}")


if __name__ == "__main__":
    run(main)
