"""masks: union of each image's nucleus masks, resized to img_size; native instance labels."""
import argparse
from pathlib import Path

from nucseg.io import open_raw, save_npy, save_npz
from nucseg.masks import build_masks
from nucseg.params import load_params, run


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--raw", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    params = load_params()
    source = open_raw(args.raw)
    masks, labels = build_masks(source, img_size=params["img_size"])
    out = Path(args.out)
    save_npz(out / "labels.npz", labels)
    save_npy(out / "masks.npy", masks)
    print(f"masks: {masks.shape} 0/1, foreground {masks.mean():.3f}; {len(labels)} label images -> {out}")


if __name__ == "__main__":
    run(main)
