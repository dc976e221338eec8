"""augmentations: a gallery per augmentation at the strengths the notebook's studies use
(ranges drawn from as in training; blur and contrast at the study's values themselves)."""
import argparse
from pathlib import Path

from nucseg.augment import blur
from nucseg.data import read_meta, select
from nucseg.io import keep_only, load_npy, read_ids
from nucseg.params import load_params, run
from nucseg.plots import augmentation_gallery

# The strengths of the notebook's augmentation study (brightness as delta ranges).
STRENGTHS = {
    "brightness": [(f"{lo:+g}..{hi:+g}", dict(brightness=(lo, hi))) for lo, hi in ((-0.1, 0.8), (-0.1, 0.5), (-0.1, 0.2))]
                  + [("+0.8", dict(brightness=(0.8, 0.8))), ("-0.1", dict(brightness=(-0.1, -0.1)))],
    "contrast": [(f"x{f:g}", dict(contrast=(f, f))) for f in (1.0, 0.6, 0.2)],
    # training draws sigma from [0, blur_sigma]: shown here at the study's maxima themselves
    "blur": [(f"sigma {s:g}", lambda image, mask, s=s: (blur(image, s, s), mask)) for s in (2.0, 4.0, 6.0)],
    "shift": [(f"{s:g}", dict(shift=s)) for s in (0.001, 0.005, 0.05, 0.2)],
    "flip": [(f"draw {i}", dict(flip=True)) for i in range(4)],
}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", required=True)
    parser.add_argument("--masks", required=True)
    parser.add_argument("--meta", required=True)
    parser.add_argument("--ids", required=True, help="train ids; the first is shown")
    parser.add_argument("--out", required=True, help="folder for one PNG per augmentation")
    args = parser.parse_args()
    seed = load_params()["seed"]
    ids = read_meta(args.meta)["id"].tolist()
    shown = read_ids(args.ids)[:1]
    image = select(load_npy(args.images), ids, shown, where=f"{args.ids} in {args.images}")[0]
    mask = select(load_npy(args.masks), ids, shown, where=f"{args.ids} in {args.masks}")[0]
    for name, settings in STRENGTHS.items():
        augmentation_gallery(image, mask, settings, Path(args.out) / f"{name}.png", seed=seed)
    keep_only(args.out, [f"{name}.png" for name in STRENGTHS])
    print(f"augmentations: {len(STRENGTHS)} galleries of {shown[0]} -> {args.out}")


if __name__ == "__main__":
    run(main)
