"""split: seeded train/val/test lists of image ids."""
import argparse
from pathlib import Path

from nucseg.data import read_meta
from nucseg.io import NucsegError, save_ids
from nucseg.params import load_params, run
from nucseg.split import split_ids


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--meta", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    params = load_params("split")
    ids = read_meta(args.meta)["id"].tolist()
    parts = split_ids(ids, val=params["val"], test=params["test"], seed=params["seed"])
    for name, part in zip(("train", "val", "test"), parts):
        if not part:   # each later stage needs images in its split: refused here (a few images, a small fraction)
            cause = "split.val and split.test leave" if name == "train" else f"split.{name} is {params[name]}, which gives"
            raise NucsegError(f"params.yaml: {cause} an empty {name} split of the {len(ids)} images; "
                              f"{'lower them' if name == 'train' else 'raise it'}, or add images")
    for name, part in zip(("train", "val", "test"), parts):
        save_ids(Path(args.out) / f"{name}.txt", part)
    print("split: " + ", ".join(f"{n} {len(p)}" for n, p in zip(("train", "val", "test"), parts)))


if __name__ == "__main__":
    run(main)
