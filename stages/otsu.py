"""otsu: the baseline, one Otsu threshold per image, at img_size and at native resolution."""
import argparse

from nucseg.io import load_npy, open_raw, save_npy, save_npz
from nucseg.otsu import otsu_batch, otsu_native
from nucseg.params import load_params, run


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", required=True, help="ingested images (img_size)")
    parser.add_argument("--raw", required=True, help="the raw data, for native resolution")
    parser.add_argument("--out", required=True, help="masks at img_size (.npy)")
    parser.add_argument("--native", required=True, help="masks at native resolution (.npz by id)")
    args = parser.parse_args()
    params = load_params("ingest", "otsu")
    masks = otsu_batch(load_npy(args.images), invert_above=params["invert_above"])
    source = open_raw(args.raw)
    native = otsu_native(source, source.ids, normalization=params["normalization"],
                         invert_above=params["invert_above"])
    save_npz(args.native, native)
    save_npy(args.out, masks)
    print(f"otsu: {masks.shape}, foreground {masks.mean():.3f} -> {args.out}; native -> {args.native}")


if __name__ == "__main__":
    run(main)
