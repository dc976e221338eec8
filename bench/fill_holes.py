"""Which holes to fill before counting nuclei (`instances.fill_holes`), chosen on the validation split.

    python bench/fill_holes.py      # about 2 minutes on a 2-core CPU; needs dvc repro's outputs

Predicts the validation split with models/unet.tflite as the predict stage predicts the test
split (native resolution, windows and TTA per params.yaml), thresholds at `evaluate.threshold`,
and post-processes the U-Net's and Otsu's masks (data/otsu/native.npz) of the validation and test
splits with each `fill_holes` mode, the other `instances.*` params as in params.yaml. Per mode:
DSB score, F1 at IoU 0.5, count error, native Dice, and the seconds the post-processing took. Per
method: the holes the masks have (validation split) and whether the truth calls each one nucleus
(more than half its pixels in a true nucleus) or background, with how many pieces of the
un-filled, split mask surround it. And, on a synthetic nucleus (a disk of radius 12), how often
`nucleus` splits it around a hole of its own: per hole radius, the fraction of the hole's positions
(every whole-pixel centre leaving a rim of at least 2 pixels) where it finds more than one nucleus.
Prints and writes plots/studies/fill_holes.json. The choice is made on the validation scores; the
test scores are reported, not used.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def hole_census(masks, truths, instance_params):
    """For each hole of each mask: its area, whether the truth says nucleus, and how many nuclei
    of the mask split without filling surround it."""
    from scipy import ndimage as ndi

    from nucseg.instances import instances

    rows, images_with_holes = [], 0
    for mask, truth in zip(masks, truths):
        holes, n = ndi.label(ndi.binary_fill_holes(mask) & ~mask)
        if not n:
            continue
        images_with_holes += 1
        pieces = instances(mask, **{**instance_params, "fill_holes": "none", "min_size": 0})
        for k, box in enumerate(ndi.find_objects(holes), 1):
            box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
            hole = holes[box] == k
            rim = ndi.binary_dilation(hole) & ~hole
            rows.append((int(hole.sum()), bool((truth[box][hole] > 0).mean() > 0.5),
                         len(set(pieces[box][rim].tolist()) - {0})))
    rows = np.array(rows).reshape(-1, 3)
    area, nucleus, around = rows[:, 0], rows[:, 1].astype(bool), rows[:, 2]
    return {"holes": len(rows), "images_with_holes": images_with_holes,
            "truth_nucleus": {"holes": int(nucleus.sum()), "pixels": int(area[nucleus].sum()),
                              "inside_one_piece": int((nucleus & (around == 1)).sum())},
            "truth_background": {"holes": int((~nucleus).sum()), "pixels": int(area[~nucleus].sum()),
                                 "inside_one_piece": int((~nucleus & (around == 1)).sum())}}


def own_hole_splits(instance_params, radius=12, hole_radii=range(1, 9), rim=2):
    """Per hole radius: positions tried, and the fraction where `nucleus` splits the disk."""
    from nucseg.instances import instances

    size = 2 * radius + 9
    yy, xx = np.mgrid[:size, :size] - size // 2
    nucleus = yy**2 + xx**2 <= radius**2
    params = {**instance_params, "fill_holes": "nucleus"}
    rows = {}
    for r in hole_radii:
        tried = split = 0
        for dy in range(-radius, radius + 1):
            for dx in range(-radius, radius + 1):
                if np.hypot(dy, dx) + r > radius - rim:
                    continue
                hole = (yy - dy) ** 2 + (xx - dx) ** 2 <= r**2
                tried += 1
                split += int(instances(nucleus & ~hole, **params).max() > 1)
        rows[str(r)] = {"positions": tried, "split": split, "fraction": round(split / tried, 3)}
    return {"nucleus_radius": radius, "rim": rim, "by_hole_radius": rows}


def main():
    from nucseg.data import native_gray
    from nucseg.evaluate import load_model, score_native
    from nucseg.instances import instances
    from nucseg.io import open_raw, read_ids, save_json
    from nucseg.params import FILL_HOLES, load_params
    from nucseg.predict import iter_native_probs

    p = load_params("ingest", "predict", "evaluate")
    instance_params = load_params("instances", with_base=False)
    model = load_model(ROOT / "models/unet.tflite")
    source = open_raw(ROOT / "data/raw")
    labels, otsu = np.load(ROOT / "data/masks/labels.npz"), np.load(ROOT / "data/otsu/native.npz")
    test_probs = np.load(ROOT / "data/predict/unet_native.npz")

    results = {"params": {k: v for k, v in instance_params.items() if k != "fill_holes"},
               "threshold": p["threshold"]}
    for split in ("val", "test"):
        ids = read_ids(ROOT / f"data/split/{split}.txt")
        if split == "val":
            grays = (native_gray(source.read_image(i), p["normalization"]) for i in ids)
            probs = iter_native_probs(model, grays, tile=p["tile"], overlap=p["overlap"],
                                      batch_size=p["batch_size"], tta=p["tta"])
        else:
            probs = (test_probs[i].astype(np.float32) for i in ids)
        masks = {"unet": [prob > p["threshold"] for prob in probs], "otsu": [otsu[i] > 0 for i in ids]}
        truths = [labels[i] for i in ids]
        results[split] = {"n_images": len(ids)}
        for method, method_masks in masks.items():
            scored = results[split][method] = {}
            for mode in FILL_HOLES:
                start = time.perf_counter()
                pred = [instances(m, **{**instance_params, "fill_holes": mode}) for m in method_masks]
                seconds = time.perf_counter() - start
                summary, _ = score_native(truths, pred, ids)
                scored[mode] = {**summary["instance"], "native_dice": summary["pixel"]["mean"]["dice"],
                                "seconds": seconds}
                print(f"{split} {method} fill_holes={mode}: DSB {scored[mode]['dsb']:.4f}, F1@0.5 "
                      f"{scored[mode]['f1_iou50']:.4f}, count MAE {scored[mode]['count_mae']:.2f}, "
                      f"native Dice {scored[mode]['native_dice']:.4f}, {seconds:.1f} s", flush=True)
            if split == "val":
                scored["holes"] = hole_census(method_masks, truths, instance_params)
                print(f"val {method} holes: {json.dumps(scored['holes'])}", flush=True)
    results["own_hole_splits"] = own_hole_splits(instance_params)
    print("nucleus splits a disk of radius 12 around its own hole, by hole radius: " + ", ".join(
        f"{r}: {v['fraction']:.0%} of {v['positions']}"
        for r, v in results["own_hole_splits"]["by_hole_radius"].items()))
    out = ROOT / "plots/studies/fill_holes.json"
    save_json(out, results)
    print(f"-> {out.relative_to(ROOT)}")


if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    main()
