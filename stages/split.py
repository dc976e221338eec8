"""split: seeded train/val/test lists of image ids."""
import argparse
from pathlib import Path

import pandas as pd

from nucseg.io import NucsegError, save_ids
from nucseg.params import load_params, run
from nucseg.split import split_ids


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--meta", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    params = load_params("split")
    ids = pd.read_csv(args.meta)["id"].tolist()
    parts = split_ids(ids, val=params["val"], test=params["test"], seed=params["seed"])
    for name, part in zip(("train", "val", "test"), parts):
        if not part and name == "train":   # every later stage needs images in each split: refused here
            raise NucsegError(f"params.yaml: split.val and split.test leave none of the {len(ids)} images to train on; "
                              "lower them, or add images")
        if not part:
            raise NucsegError(f"params.yaml: split.{name} is {params[name]}, an empty {name} split of {len(ids)} "
                              "images; raise it, or add images")
    for name, part in zip(("train", "val", "test"), parts):
        save_ids(Path(args.out) / f"{name}.txt", part)
    print("split: " + ", ".join(f"{n} {len(p)}" for n, p in zip(("train", "val", "test"), parts)))


if __name__ == "__main__":
    run(main)
