"""robustness: U-Net and Otsu on test images degraded at increasing severities.

The test images are degraded at the scale the model sees them (`nucseg.windows`): resized by
img_size / tile (with tile 0: to img_size, whole), and predicted in img_size windows there, so
that severities in pixels mean the same as in training's degradation augmentation; with tile
> 0 the instance params, in native pixels, are scaled alike (`instances.min_size` 30 is 8 pixels
at half size; with tile 0 each image has its own scale, and they stay as they are). At the worst severity, the U-Net's margin over Otsu gets a 95% interval from a
paired bootstrap over the test images; every image's scores are written for other comparisons.
The model runs without test-time flips (`predict.tta`: 35 levels of 67 images would take four
times as long), in batches of 64 windows (LiteRT computes them 8 at a time).
"""
import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from nucseg.data import native_gray, read_meta, resize, select
from nucseg.evaluate import load_model, predict_probs
from nucseg.io import NucsegError, keep_only, load_npy, load_npz, open_raw, read_ids, restore_fix, save_csv, save_json
from nucseg.masks import resize_mask
from nucseg.params import load_params, run
from nucseg.plots import gallery, severity_curves
from nucseg.predict import iter_native_probs
from nucseg.robustness import as_metrics, curve_rows, labels_at, params_at_scale, robustness, worst_case_table
from nucseg.windows import model_scale_shape


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--images", required=True)
    parser.add_argument("--masks", required=True)
    parser.add_argument("--labels", required=True, help="native-resolution truth label images (.npz)")
    parser.add_argument("--meta", required=True)
    parser.add_argument("--raw", required=True, help="the raw data (with base.tile > 0)")
    parser.add_argument("--ids", required=True, help="test ids")
    parser.add_argument("--metrics", required=True)
    parser.add_argument("--per-image", required=True, help="CSV: Dice and DSB of each test image, method, level")
    parser.add_argument("--curves", required=True, help="CSV: each level's mean scores, for dvc plots")
    parser.add_argument("--plots", required=True, help="folder for one PNG per degradation and a gallery")
    args = parser.parse_args()
    p = load_params("ingest", "robustness")
    overlap = load_params("predict", with_base=False)["overlap"]
    threshold = load_params("evaluate")["threshold"]
    invert_above = load_params("otsu")["invert_above"]
    instance_params = load_params("instances", with_base=False)

    all_ids, ids = read_meta(args.meta)["id"].tolist(), read_ids(args.ids)
    if p["example"] and p["example"] not in ids:
        raise NucsegError(f"params.yaml: robustness.example is {p['example']!r}, not an id in {args.ids}; "
                          "use one of its ids, or \"\" for the first")
    tile, size = p["tile"], p["img_size"]
    if tile:   # nuclei are size / tile of their native size here: so are the instance params in pixels
        instance_params = params_at_scale(instance_params, size / tile)
    model = load_model(args.model, fix=restore_fix(args.model))
    with load_npz(args.labels) as native:
        if tile:
            source = open_raw(args.raw)
            images = []
            for i in ids:
                gray = native_gray(source.read_image(i), p["normalization"])
                images.append(resize(gray, model_scale_shape(gray.shape, tile, size)))
            masks = [resize_mask(native[i] > 0, im.shape) for i, im in zip(ids, images)]
            labels = [labels_at(native[i], im.shape) for i, im in zip(ids, images)]
            # windows of img_size at this scale: the model's input, without resizing
            scaled_overlap = round(overlap * size / tile)
            predict = lambda x: list(iter_native_probs(model, x, tile=size, overlap=scaled_overlap, batch_size=64))
        else:
            images = select(load_npy(args.images), all_ids, ids, where=f"{args.ids} in {args.images}")
            masks = select(load_npy(args.masks), all_ids, ids, where=f"{args.ids} in {args.masks}")
            labels = [labels_at(native[i], size) for i in ids]
            predict = lambda x: predict_probs(model, np.stack(x), batch_size=64)
    degradations = {name: p["severities"][name] for name in p["degradations"]}
    results, examples, per_image = robustness(
        predict, images, masks, labels, degradations,
        threshold=threshold, invert_above=invert_above, instance_params=instance_params, seed=p["seed"],
        example=ids.index(p["example"]) if p["example"] else 0, normalization=p["normalization"],
    )
    table = worst_case_table(results, per_image, seed=p["seed"])
    save_json(args.metrics, as_metrics(results, table, len(ids)))
    save_csv(args.per_image, pd.DataFrame(
        [{"degradation": name, "severity": severities[level], "id": image_id, "method": method,
          **{metric: values[k] for metric, values in each[method].items()}}
         for name, severities in degradations.items() for level, each in enumerate(per_image[name])
         for method in ("unet", "otsu") for k, image_id in enumerate(ids)]))
    save_csv(args.curves, pd.DataFrame(curve_rows(results)))
    out = Path(args.plots)
    for name, rows in results.items():
        severity_curves(rows, name, out / f"{name}.png")
    names = list(examples)
    gallery([examples[n][0] for n in names],
            {"truth": [examples[n][1] for n in names], "Otsu": [examples[n][2] for n in names],
             "U-Net": [examples[n][3] for n in names]},
            out / "gallery_worst.png", titles=[f"{n}\n{results[n][-1]['severity']:g}" for n in names])
    keep_only(out, [f"{name}.png" for name in results] + ["gallery_worst.png"])   # e.g. a degradation dropped
    for name, row in table.items():
        low, high = row["margin_ci95_low"], row["margin_ci95_high"]
        print(f"robustness: {name:16s} worst {row['severity']:g}: U-Net Dice {row['unet_dice']:.3f}, "
              f"Otsu {row['otsu_dice']:.3f}, margin {row['margin']:+.3f} [{low:+.3f}, {high:+.3f}], "
              f"Otsu better on {row['otsu_better']} of {len(ids)}")


if __name__ == "__main__":
    run(main)
