"""evaluate: U-Net and Otsu side by side on the test split; metrics and figures."""
import argparse

import numpy as np
import pandas as pd

from nucseg.data import select
from nucseg.evaluate import compare, pick_gallery
from nucseg.io import read_ids, save_csv, save_json
from nucseg.params import load_params, run
from nucseg.plots import gallery, metric_bars


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", required=True)
    parser.add_argument("--masks", required=True)
    parser.add_argument("--meta", required=True)
    parser.add_argument("--ids", required=True, help="test ids, in the order of --unet")
    parser.add_argument("--otsu", required=True)
    parser.add_argument("--unet", required=True, help="U-Net probabilities")
    parser.add_argument("--metrics", required=True)
    parser.add_argument("--per-image", required=True)
    parser.add_argument("--bars", required=True)
    parser.add_argument("--gallery", required=True)
    args = parser.parse_args()
    params = load_params("evaluate")

    all_ids, ids = pd.read_csv(args.meta)["id"].tolist(), read_ids(args.ids)
    truth = select(np.load(args.masks), all_ids, ids)
    predictions = {
        "otsu": select(np.load(args.otsu), all_ids, ids),
        "unet": (np.load(args.unet).astype(np.float32) > params["threshold"]).astype(np.uint8),
    }
    summary, per_image = compare(truth, predictions, ids)
    save_json(args.metrics, {"n_images": len(ids), "threshold": params["threshold"], **summary})
    save_csv(args.per_image, per_image)
    metric_bars(summary, args.bars, title=f"test split ({len(ids)} images)")

    shown = pick_gallery(per_image, params["gallery_images"])
    rows = [ids.index(i) for i in shown]
    dice = per_image.set_index(["method", "id"])["dice"]
    gallery(
        list(select(np.load(args.images), all_ids, shown)),
        {"truth": truth[rows], "Otsu": predictions["otsu"][rows], "U-Net": predictions["unet"][rows]},
        args.gallery,
        titles=[f"{i[:8]}\nDice Otsu {dice['otsu', i]:.2f}\nU-Net {dice['unet', i]:.2f}" for i in shown],
    )
    for method, s in summary.items():
        print(f"evaluate: {method:5s} " + " ".join(f"{k} {v:.4f}" for k, v in s["mean"].items()))


if __name__ == "__main__":
    run(main)
