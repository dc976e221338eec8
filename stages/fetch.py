"""fetch: make sure stage1_train is under data/raw (zip or folder), downloading it if absent."""
import argparse

from nucseg.fetch import BBBC038_URL, ensure_raw
from nucseg.params import run


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, help="folder for stage1_train.zip or stage1_train/")
    parser.add_argument("--url", default=BBBC038_URL)
    args = parser.parse_args()
    source = ensure_raw(args.out, args.url)
    n_masks = sum(len(m) for m in source.masks.values())
    print(f"fetch: {source.path}: {len(source.ids)} images, {n_masks} nucleus masks")


if __name__ == "__main__":
    run(main)
