"""ingest: every raw image to a grayscale float array at img_size, with its metadata."""
import argparse
from pathlib import Path

from nucseg.data import ingest
from nucseg.io import open_raw, save_csv, save_npy
from nucseg.params import load_params, run


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--raw", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    params = load_params("ingest")
    source = open_raw(args.raw)
    images, meta = ingest(source, img_size=params["img_size"], normalization=params["normalization"])
    out = Path(args.out)
    save_csv(out / "meta.csv", meta)
    save_npy(out / "images.npy", images)
    print(f"ingest: {images.shape} float32 -> {out}")


if __name__ == "__main__":
    run(main)
