"""Benchmarks of every stage against the original notebook's way, in the same run.

    python bench/bench.py                       # everything, on ../shared's stage1_train.zip
    python bench/bench.py --only infer,native   # some sections
    python bench/bench.py --zip data/raw/stage1_train.zip --repeats 5

Prints the results and writes bench/results.json (sections not run keep their last results).
Times are medians of `--repeats` runs; each figure of ours comes with the reference's, timed in
the same run, so that the ratio, not the noisy absolute time, is the claim. Ingest and training
alternate ours and the reference in `--repeats` rounds (each training configuration in a fresh
process) and report the median of the per-round ratios.
Not a test: nothing here asserts a time.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ZIP = ROOT.parent / "shared" / "data" / "dsb2018" / "stage1_train.zip"
SECTIONS = ("ingest", "train", "threads", "onednn", "profile", "infer", "native", "evaluate", "repro", "rss")


def median_time(func, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


# ---------------------------------------------------------------------------------------------
# The notebook's way, kept here as the reference


def reference_ingest(source, size=128):
    """The notebook: a PIL loop reading each image and each mask, resizing each mask on its own
    and adding them up (the fractional labels it leaves are not fixed here: that is its speed)."""
    from PIL import Image
    import io

    images, masks = [], []
    for image_id in source.ids:
        img = Image.open(io.BytesIO(source.read_bytes(source.images[image_id]))).convert("RGB")
        images.append(np.asarray(img.resize((size, size)), dtype=np.float32) / 255.0)
        mask = np.zeros((size, size), np.float32)
        for member in source.masks[image_id]:
            m = Image.open(io.BytesIO(source.read_bytes(member))).resize((size, size))
            mask = np.maximum(mask, np.asarray(m, dtype=np.float32) / 255.0)
        masks.append(mask)
    return np.stack(images), np.stack(masks)


def ours_ingest(source, size=128):
    from nucseg.data import ingest
    from nucseg.masks import build_masks

    images, _ = ingest(source, img_size=size)
    masks, _ = build_masks(source, img_size=size)
    return images, masks


# ---------------------------------------------------------------------------------------------
# Model cost


def model_flops(model):
    """Forward FLOPs of one image, counted by TensorFlow's profiler on the model's graph."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    spec = tf.TensorSpec([1, *model.input_shape[1:]], tf.float32)
    frozen = convert_variables_to_constants_v2(tf.function(lambda x: model(x, training=False)).get_concrete_function(spec))
    opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    opts["output"] = "none"
    info = tf.compat.v1.profiler.profile(graph=frozen.graph, run_meta=tf.compat.v1.RunMetadata(), cmd="op", options=opts)
    return int(info.total_float_ops)


def cpu_info():
    """The CPU's model name and whether it computes in bfloat16 (AVX512-BF16 or AMX)."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    lines = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    flags = set(lines.get("flags\t\t", "").split())
    return {"cpu_model": lines.get("model name\t", platform.machine()).strip(),
            "avx512": "avx512f" in flags, "bf16": bool(flags & {"avx512_bf16", "amx_bf16"})}


def cpu_peak():
    """The measured rate of a large single-precision matrix product: the achievable peak.

    (A cores x clock x FLOP-per-cycle estimate from /proc/cpuinfo came out below this measured
    rate on the cloud CPU here, whose boost clock it does not see, so none is reported.)
    """
    import tensorflow as tf

    a = tf.random.normal([2048, 2048])
    b = tf.random.normal([2048, 2048])
    tf.linalg.matmul(a, b).numpy()
    seconds, _ = median_time(lambda: tf.linalg.matmul(a, b).numpy(), 5)
    return {"cores": os.cpu_count(), "sgemm_gflops": 2 * 2048**3 / seconds / 1e9}


# ---------------------------------------------------------------------------------------------
# Sections


def bench_ingest(source, repeats):
    """Ours and the reference alternately, `repeats` rounds: the speedup is the median of the
    per-round ratios, so that the machine changing speed between rounds weighs on both sides."""
    ours_all, ref_all = [], []
    for _ in range(repeats):
        ours_all.append(median_time(lambda: ours_ingest(source), 1)[0])
        ref_all.append(median_time(lambda: reference_ingest(source), 1)[0])
    return {"images": len(source.ids), "ours_s": statistics.median(ours_all),
            "reference_s": statistics.median(ref_all),
            "speedup": statistics.median(r / o for r, o in zip(ref_all, ours_all)),
            "ours_runs": ours_all, "reference_runs": ref_all}


def _training_arrays():
    from nucseg.data import read_meta, select
    from nucseg.io import read_ids

    ids = read_meta(ROOT / "data/ingest/meta.csv")["id"].tolist()
    train_ids = read_ids(ROOT / "data/split/train.txt")
    return (select(np.load(ROOT / "data/ingest/images.npy"), ids, train_ids),
            select(np.load(ROOT / "data/masks/masks.npy"), ids, train_ids))


def _epoch_rate(fit_once, n_images, epochs):
    """Images per second of the epochs after the first (which includes tracing)."""
    times = []
    for epoch in range(epochs + 1):
        start = time.perf_counter()
        fit_once()
        if epoch:
            times.append(time.perf_counter() - start)
    return n_images / statistics.median(times)


AUGMENT = dict(brightness=(-0.1, 0.1), contrast=(0.8, 1.2), shift=0.05, blur_sigma=1.0, flip=True)


def train_rate(way, freeze, policy, epochs):
    """Training images/s of one configuration, in this process. `way`: ``ours`` (the tf.data
    pipeline with augmentation, batch 16), ``ours_noaug`` (the same without augmentation: what
    augmenting costs) or ``reference`` (numpy arrays straight into `fit`, batch 16, no
    augmentation, as the notebook)."""
    import keras

    from nucseg.model import get_model
    from nucseg.train import compile_model, make_dataset

    x, y = _training_arrays()
    keras.mixed_precision.set_global_policy(policy)
    model = compile_model(get_model(128, "imagenet", freeze), 1e-3)
    if way == "reference":
        return _epoch_rate(lambda: model.fit(x[..., None], y[..., None].astype(np.float32), batch_size=16,
                                             epochs=1, verbose=0), len(x), epochs)
    ds = make_dataset(x, y, 16, shuffle=True, augment=AUGMENT if way == "ours" else None)
    return _epoch_rate(lambda: model.fit(ds, epochs=1, verbose=0), len(x), epochs)


def _child(call, settings=None):
    """The value of `call` (an expression over this module, JSON-serialisable) computed in a fresh
    process: measured in one process one after another, later training configurations ran up to 1.5x slower than alone.
    TensorFlow also reads its thread settings and TF_ENABLE_ONEDNN_OPTS only at start-up:
    `settings` maps such variables to their values ("" = unset, TensorFlow's choice)."""
    settings = settings or {}
    env = {k: v for k, v in os.environ.items() if k not in settings}
    env.update({k: v for k, v in settings.items() if v})
    code = (f"import json, sys; sys.path.insert(0, {str(ROOT / 'bench')!r}); import bench; "
            f"print(json.dumps(bench.{call}))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])


def _child_train_rate(way, freeze, policy, epochs, settings=None):
    return _child(f"train_rate({way!r}, {freeze!r}, {policy!r}, {epochs})", settings)


def bench_train(epochs, rounds, policy_names=("float32", "mixed_bfloat16")):
    """Each configuration `rounds` times, the rounds interleaved (reference, ours, ...; then again),
    so that a machine slowing down or speeding up over the minutes of the run (a shared VM does)
    weighs on both sides alike. Reported: medians of the rounds, and the median of the per-round
    ratios."""
    results = {}
    for freeze in (True, False):
        key = "frozen" if freeze else "trainable"
        configs = [("reference", "float32"), *[("ours", p) for p in policy_names]]
        if freeze:
            configs.append(("ours_noaug", "float32"))
        runs = {c: [] for c in configs}
        for _ in range(rounds):
            for way, policy in configs:
                runs[way, policy].append(_child_train_rate(way, freeze, policy, epochs))
        ref = runs["reference", "float32"]
        results[f"{key}_reference_img_s"] = statistics.median(ref)
        results[f"{key}_reference_runs"] = ref
        for (way, policy), rates in runs.items():
            if way == "reference":
                continue
            name = f"{key}_{policy}" if way == "ours" else f"{key}_{policy}_noaug"
            results[f"{name}_img_s"] = statistics.median(rates)
            results[f"{name}_runs"] = rates
            results[f"{name}_speedup"] = statistics.median(r / q for r, q in zip(rates, ref))
    return results


THREAD_SETTINGS = {   # name: TensorFlow's thread variables; "" = TensorFlow's choice
    name: {"TF_NUM_INTRAOP_THREADS": intra, "TF_NUM_INTEROP_THREADS": inter}
    for name, (intra, inter) in {"default": ("", ""), "intra2_inter1": ("2", "1"), "intra1_inter2": ("1", "2")}.items()
}


def bench_threads(epochs):
    """The thread-settings lever: our frozen-encoder training throughput under each of
    THREAD_SETTINGS."""
    return {f"{name}_img_s": _child_train_rate("ours", True, "float32", epochs, settings)
            for name, settings in THREAD_SETTINGS.items()}


def bench_onednn(epochs, rounds):
    """The kernel-library lever: our training throughput with TensorFlow's oneDNN operations
    (its default on x86) and without them (TF_ENABLE_ONEDNN_OPTS=0: Eigen's kernels), the two
    alternating in `rounds` rounds. Reported: medians, and the median of the per-round ratios."""
    results = {}
    for freeze in (True, False):
        key = "frozen" if freeze else "trainable"
        runs = {flag: [] for flag in ("1", "0")}
        for _ in range(rounds):
            for flag, rates in runs.items():
                rates.append(_child_train_rate("ours", freeze, "float32", epochs, {"TF_ENABLE_ONEDNN_OPTS": flag}))
        for flag, name in (("1", "onednn"), ("0", "eigen")):
            results[f"{key}_{name}_img_s"] = statistics.median(runs[flag])
            results[f"{key}_{name}_runs"] = runs[flag]
        results[f"{key}_eigen_vs_onednn"] = statistics.median(a / b for a, b in zip(runs["0"], runs["1"]))
    return results


DECODER_BLOCK = re.compile(r"/(up_\d+|logits)(?:_\d+)?/")   # the block an op belongs to: up_0 ... up_3, logits


def step_profile(freeze, steps=5):
    """Where a training step's time goes: TensorFlow's profiler over `steps` steps of ours (a batch
    of 16 training images, 128 px), its per-op times summed by what the op does. The decoder's
    transposed convolutions are three ops each, all named ``conv_transpose``: the forward pass
    (Conv2DBackpropInput), the gradient of the input (Conv2D) and of the kernel
    (Conv2DBackpropFilter); each costs the layer's forward FLOPs. Shares are of the time ops ran
    (summed over ops, which can overlap on the cores; idle time left out). Encoder ops are those
    under the encoder model, the rest (decoder BatchNorm, ReLU and concatenations, the loss, the
    optimizer) other."""
    import tensorflow as tf
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin as profiler_plugin

    from nucseg.model import DECODER_FILTERS, get_model
    from nucseg.train import compile_model

    batch = 16
    x, y = _training_arrays()
    x, y = x[:batch, ..., None], y[:batch, ..., None].astype(np.float32)
    model = compile_model(get_model(128, "imagenet", freeze), 1e-3)
    for _ in range(3):
        model.train_on_batch(x, y)
    step_s, _ = median_time(lambda: model.train_on_batch(x, y), steps)
    with tempfile.TemporaryDirectory(prefix="nucseg-profile-") as logdir:
        tf.profiler.experimental.start(logdir)
        for _ in range(steps):
            model.train_on_batch(x, y)
        tf.profiler.experimental.stop()
        [xspace] = Path(logdir).glob("plugins/profile/*/*.xplane.pb")
        data, ok = profiler_plugin.xspace_to_tools_data([str(xspace)], "framework_op_stats", {})
    if not ok:
        raise RuntimeError(f"TensorFlow's profiler could not read {xspace.name}")
    table = json.loads(data)[0]
    names = [col["id"] for col in table["cols"]]
    ops = [dict(zip(names, [cell.get("v") if cell else None for cell in row["c"]])) for row in table["rows"]]

    flops = {}   # forward FLOPs of each transposed convolution (the blocks nucseg.model names), a batch
    for name in [f"up_{i}" for i in range(len(DECODER_FILTERS))] + ["logits"]:
        block = model.get_layer(name)
        conv = block if name == "logits" else block.layers[0]
        _, h, w, cin = block.input.shape
        kh, kw, cout, _ = conv.kernel.shape
        flops[name] = 2 * batch * h * w * kh * kw * cin * cout
    kinds = {"Conv2DBackpropInput": "forward", "Conv2D": "input_gradient", "Conv2DBackpropFilter": "kernel_gradient"}
    ms = {"busy": 0.0, "encoder": 0.0, **{kind: 0.0 for kind in kinds.values()}}
    gflop = dict.fromkeys(kinds.values(), 0.0)
    for op in ops:
        if op["type"] == "IDLE":
            continue
        t = op["total_self_time"] / 1e3 / steps        # microseconds over all steps -> ms per step
        ms["busy"] += t
        if "conv_transpose" in op["operation"]:
            kind = kinds[op["type"]]
            ms[kind] += t
            gflop[kind] += flops[DECODER_BLOCK.search(op["operation"]).group(1)] / 1e9
        elif "/encoder" in op["operation"]:
            ms["encoder"] += t
    tconv = sum(ms[kind] for kind in kinds.values())
    return {"step_ms": step_s * 1e3, "busy_ms": ms["busy"],
            "transposed_conv_share": tconv / ms["busy"], "encoder_share": ms["encoder"] / ms["busy"],
            **{f"{kind}_share": ms[kind] / ms["busy"] for kind in kinds.values()},
            **{f"{kind}_gflop_s": gflop[kind] / ms[kind] * 1e3 for kind in kinds.values() if ms[kind]},
            # how much faster a step could be if every other op took no time: bounds of any lever
            # that leaves the model's arithmetic as it is (the encoder's is needed when it trains)
            "bound_transposed_convs_only": ms["busy"] / tconv,
            "bound_transposed_convs_and_encoder": ms["busy"] / (tconv + ms["encoder"])}


def bench_profile(steps):
    """`step_profile` with the encoder frozen and trainable, each in a fresh process."""
    return {("frozen" if freeze else "trainable"): _child(f"step_profile({freeze!r}, {steps})")
            for freeze in (True, False)}


def bench_infer(model, lite, repeats):
    """128 px images: ours batched through the Keras model and through its LiteRT conversion;
    the reference calls `model.predict` on each image."""
    from nucseg.evaluate import predict_probs

    images = np.load(ROOT / "data/ingest/images.npy")
    results = {}
    for name, m in (("ours", model), ("ours_litert", lite)):
        predict_probs(m, images[:64], batch_size=64)
        seconds, _ = median_time(lambda: predict_probs(m, images, batch_size=64), repeats)
        results[f"{name}_img_s"] = len(images) / seconds
    n_ref = 100
    ref, _ = median_time(lambda: [model.predict(im[None, ..., None], verbose=0) for im in images[:n_ref]], repeats)
    results["reference_img_s"] = n_ref / ref
    for name in ("ours", "ours_litert"):
        results[f"{name}_speedup"] = results[f"{name}_img_s"] / results["reference_img_s"]
    return results


def bench_native(model, lite, source, ids, repeats, tiles=(512, 256)):
    """Full-resolution U-Net probabilities: ours tiles and batches windows across images (at each
    tile size of `tiles`; 256 is the pipeline's default), through the Keras model and through its
    LiteRT conversion (what the predict stage runs); the reference predicts each image at 128 px
    with `model.predict` and resizes the probabilities back with scikit-image."""
    from skimage.transform import resize as sk_resize

    from nucseg.data import native_gray, resize
    from nucseg.predict import iter_native_probs

    grays = [native_gray(source.read_image(i)) for i in ids]
    mpx = sum(g.size for g in grays) / 1e6

    def reference():
        for g in grays:
            p = model.predict(resize(g, 128)[None, ..., None], verbose=0)[0, ..., 0]
            sk_resize(1 / (1 + np.exp(-p)), g.shape, order=1)

    ref_s, _ = median_time(reference, repeats)
    results = {"images": len(ids), "megapixels": mpx, "reference_mpx_s": mpx / ref_s}
    for engine, m in (("", model), ("litert_", lite)):
        for tile in tiles:
            list(iter_native_probs(m, grays[:4], tile=tile, overlap=64, batch_size=32))  # trace once
            ours_s, _ = median_time(lambda: list(iter_native_probs(m, grays, tile=tile, overlap=64,
                                                                    batch_size=32)), repeats)
            results[f"{engine}tile{tile}_mpx_s"] = mpx / ours_s
            results[f"{engine}tile{tile}_speedup"] = ref_s / ours_s
    return results


def stage_commands():
    import yaml

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    return {name: " ".join(stage["cmd"].split()) for name, stage in stages.items()}


def bench_rss(train_epochs=1):
    """Peak RSS of every stage's command, run as DVC runs it. Outputs go to a scratch copy of the
    workspace's data, so nothing committed changes; train runs `train_epochs` epochs."""
    import shutil

    import yaml

    results = {}
    with tempfile.TemporaryDirectory(prefix="nucseg-bench-") as scratch:
        scratch = Path(scratch)
        for folder in ("data", "models", "metrics", "plots", "stages"):
            if (ROOT / folder).exists():   # real copies: data/raw may be a relative symlink
                shutil.copytree(ROOT / folder, scratch / folder, ignore=shutil.ignore_patterns(".*.tmp*"))
        params = yaml.safe_load((ROOT / "params.yaml").read_text())
        params["train"]["epochs"] = train_epochs
        params["train"]["finetune_epochs"] = min(params["train"]["finetune_epochs"], 1)
        (scratch / "params.yaml").write_text(yaml.safe_dump(params))
        for name, cmd in stage_commands().items():
            code = ("import resource, subprocess, time; t = time.perf_counter(); "
                    f"r = subprocess.run({cmd!r}, shell=True, capture_output=True); "
                    "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r.returncode)")
            out = subprocess.run([sys.executable, "-c", code], cwd=scratch, capture_output=True, text=True)
            seconds, kib, rc = out.stdout.split()
            results[name] = {"seconds": float(seconds), "peak_rss_mib": int(kib) / 1024, "ok": rc == "0"}
    return results


def bench_repro(repeats):
    """A `dvc repro` with nothing to do, on the committed pipeline. Most of it is DVC's own
    start-up (importing it: about half) and reading dvc.yaml, dvc.lock and params.yaml, which
    DVC parses with ruamel.yaml: in C when `ruamel.yaml.clib` is installed (a dependency of
    nucseg for this), else in pure Python."""
    from ruamel.yaml.main import CParser

    def noop():
        subprocess.run(["dvc", "repro"], cwd=ROOT, capture_output=True, check=True)

    noop()
    seconds, runs = median_time(noop, repeats)
    return {"noop_repro_s": seconds, "runs": runs, "yaml_parser": "C" if CParser else "pure Python"}


# ---------------------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zip", default=str(DEFAULT_ZIP))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-epochs", type=int, default=2, help="timed epochs per training configuration")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated among {', '.join(SECTIONS)}")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results.json"))
    args = parser.parse_args()
    only = set(args.only.split(","))
    if only - set(SECTIONS):
        parser.error(f"--only: no section {', '.join(sorted(only - set(SECTIONS)))}; use {', '.join(SECTIONS)}")

    from nucseg.io import RawSource, read_ids, save_json

    results = {"machine": {"python": platform.python_version(), **cpu_info()}}
    import tensorflow as tf

    results["machine"].update(cpu_peak(), tensorflow=tf.__version__)
    source = RawSource(args.zip)
    model = None
    if only & {"infer", "native", "train"}:
        from nucseg.evaluate import load_model
        model = load_model(ROOT / "models" / "unet.keras")
        forward = model_flops(model)
        results["model"] = {"forward_gflop_per_image": forward / 1e9,
                            "train_gflop_per_image_trainable": 3 * forward / 1e9}

    if "ingest" in only:
        results["ingest"] = bench_ingest(source, args.repeats)
    if "train" in only:
        # bfloat16 only where the CPU computes in it; elsewhere it is emulated, slower than float32
        policies = ("float32", "mixed_bfloat16") if results["machine"]["bf16"] else ("float32",)
        results["train"] = bench_train(args.train_epochs, args.repeats, policies)
        best = max(v for k, v in results["train"].items()
                   if k.startswith("trainable_") and k.endswith("_img_s") and "reference" not in k)
        results["train"]["trainable_fraction_of_sgemm_peak"] = (
            best * results["model"]["train_gflop_per_image_trainable"] / results["machine"]["sgemm_gflops"])
    if "threads" in only:
        results["threads"] = bench_threads(args.train_epochs)
    if "onednn" in only:
        results["onednn"] = bench_onednn(args.train_epochs, args.repeats)
    if "profile" in only:
        results["profile"] = bench_profile(5)
    if only & {"infer", "native"}:
        # converted only now: with the interpreter and the converter's graphs in the process,
        # training in it ran at half speed (measured: 13 against 26 img/s)
        from nucseg.lite import LiteModel, convert

        start = time.perf_counter()
        lite = LiteModel(convert(model))
        results["model"]["litert_convert_s"] = time.perf_counter() - start
    if "infer" in only:
        results["infer"] = bench_infer(model, lite, args.repeats)
        results["infer"]["litert_fraction_of_sgemm_peak"] = (
            results["infer"]["ours_litert_img_s"] * results["model"]["forward_gflop_per_image"]
            / results["machine"]["sgemm_gflops"])
    if "native" in only:
        results["native"] = bench_native(model, lite, source, read_ids(ROOT / "data/split/test.txt"), args.repeats)
    if "evaluate" in only or "rss" in only:
        results["stages"] = bench_rss()
    if "repro" in only:
        results["repro"] = bench_repro(args.repeats)

    # sections not run this time keep their last results (each section holds its own reference)
    previous = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
    results = {**previous, **results}
    save_json(args.out, results)   # atomic: a run killed here leaves the last results whole
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
