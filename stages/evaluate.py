"""evaluate: U-Net and Otsu side by side on the test split; metrics and figures.

Pixel metrics at img_size (what the model is trained on) and at native resolution; instance
metrics (DSB score, F1 at IoU 0.5, count error) at native resolution.
"""
import argparse

import numpy as np
import pandas as pd

from nucseg.data import read_meta, select
from nucseg.evaluate import compare, pick_gallery, score_native, side_by_side
from nucseg.instances import instances
from nucseg.io import load_npy, load_npz, read_ids, read_table, save_csv, save_json
from nucseg.modality import by_modality, modalities
from nucseg.params import load_params, run
from nucseg.plots import gallery, metric_bars, otsu_vs_unet, training_curves


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", required=True)
    parser.add_argument("--masks", required=True)
    parser.add_argument("--labels", required=True, help="native-resolution truth label images (.npz)")
    parser.add_argument("--meta", required=True)
    parser.add_argument("--ids", required=True, help="test ids, in the order of --unet")
    parser.add_argument("--otsu", required=True)
    parser.add_argument("--otsu-native", required=True)
    parser.add_argument("--unet", required=True, help="U-Net probabilities at img_size")
    parser.add_argument("--unet-native", required=True, help="U-Net probabilities at native resolution")
    parser.add_argument("--metrics", required=True)
    parser.add_argument("--per-image", required=True)
    parser.add_argument("--side-by-side", required=True,
                        help="CSV, one row per test image: its modality and both methods' native Dice and DSB")
    parser.add_argument("--scatter", required=True, help="PNG of the same, Otsu against the U-Net per image")
    parser.add_argument("--bars", required=True)
    parser.add_argument("--gallery", required=True)
    parser.add_argument("--history", required=True, help="training history CSV")
    parser.add_argument("--curves", required=True, help="PNG of the training curves")
    args = parser.parse_args()
    params = load_params("evaluate")
    instance_params = load_params("instances", with_base=False)
    threshold = params["threshold"]

    meta = read_meta(args.meta, ("id", "color", "mean"))   # the modalities come from colour and mean
    all_ids, ids = meta["id"].tolist(), read_ids(args.ids)
    truth = select(load_npy(args.masks), all_ids, ids, where=f"{args.ids} in {args.masks}")
    predictions = {
        "otsu": select(load_npy(args.otsu), all_ids, ids, where=f"{args.ids} in {args.otsu}"),
        "unet": (load_npy(args.unet).astype(np.float32) > threshold).astype(np.uint8),
    }
    summary, per_image = compare(truth, predictions, ids)

    with load_npz(args.labels) as labels, load_npz(args.otsu_native) as otsu, load_npz(args.unet_native) as unet:
        truth_native = [labels[i] for i in ids]
        native_masks = {"otsu": [otsu[i] for i in ids],
                        "unet": [(unet[i].astype(np.float32) > threshold).astype(np.uint8) for i in ids]}
    native_rows = []
    for method, masks in native_masks.items():
        scores, rows = score_native(truth_native, [instances(m, **instance_params) for m in masks], ids)
        summary[method]["native"] = scores["pixel"]["mean"]
        summary[method]["instance"] = scores["instance"]
        native_rows.append(rows[["id", "dice", "dsb", "f1", "n_true", "n_pred", "count_error"]]
                           .rename(columns={"dice": "native_dice", "f1": "f1_iou50"}).assign(method=method))
    per_image = per_image.merge(pd.concat(native_rows), on=["id", "method"])

    per_modality = by_modality(per_image, modalities(meta))
    for method in summary:
        summary[method]["modality"] = per_modality[method]
    save_json(args.metrics, {"n_images": len(ids), "threshold": threshold, **summary})
    save_csv(args.per_image, per_image)
    paired = side_by_side(per_image, modalities(meta))
    save_csv(args.side_by_side, paired)
    otsu_vs_unet(paired, args.scatter)
    metric_bars(summary, args.bars, title=f"test split ({len(ids)} images)")
    training_curves(read_table(args.history, ("epoch", "loss", "val_loss", "dice", "val_dice")), args.curves)

    shown = pick_gallery(per_image, params["gallery_images"])
    rows = [ids.index(i) for i in shown]
    dice = per_image.set_index(["method", "id"])["dice"]
    gallery(
        list(select(load_npy(args.images), all_ids, shown)),
        {"truth": truth[rows], "Otsu": predictions["otsu"][rows], "U-Net": predictions["unet"][rows]},
        args.gallery,
        titles=[f"{i[:8]}\nDice Otsu {dice['otsu', i]:.2f}\nU-Net {dice['unet', i]:.2f}" for i in shown],
    )
    for method, s in summary.items():
        print(f"evaluate: {method:5s} Dice {s['mean']['dice']:.4f} (native {s['native']['dice']:.4f}), "
              f"DSB {s['instance']['dsb']:.4f}, F1@0.5 {s['instance']['f1_iou50']:.4f}, "
              f"count MAE {s['instance']['count_mae']:.1f}; "
              + ", ".join(f"{m} ({v['n_images']}) native Dice {v['native_dice']:.3f}" for m, v in s["modality"].items()
                          if v["n_images"]))


if __name__ == "__main__":
    run(main)
