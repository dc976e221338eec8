import numpy as np
import pytest

from nucseg.evaluate import compare, pick_gallery, score_native, side_by_side
from nucseg.labelled import truth_from_rle
from nucseg.rle import rle_encode
from test_metrics import GT, PR


def test_compare_side_by_side():
    truth = np.stack([GT, GT])
    summary, per_image = compare(truth, {"otsu": np.stack([PR, PR]), "unet": truth}, ["a", "b"])
    assert summary["unet"]["mean"]["dice"] == 1.0
    assert summary["otsu"]["mean"]["dice"] == pytest.approx(0.5)
    assert summary["otsu"]["pooled"]["iou"] == pytest.approx(1 / 3)
    assert list(per_image["method"]) == ["otsu", "otsu", "unet", "unet"]
    # two different images: image 1 Dice 1/2 (tp 1, fp 1, fn 1), image 2 Dice 4/6 (tp 2, fp 2, fn 0);
    # their mean 7/12, pooled tp 3, fp 3, fn 1: Dice 6/10
    summary, _ = compare(truth, {"otsu": np.stack([PR, np.ones_like(GT)])}, ["a", "b"])
    assert summary["otsu"]["mean"]["dice"] == pytest.approx(7 / 12)
    assert summary["otsu"]["pooled"]["dice"] == pytest.approx(0.6)


def test_side_by_side_puts_each_methods_score_of_an_image_in_one_row():
    import pandas as pd

    per_image = pd.DataFrame({"id": ["b", "a", "b", "a"], "method": ["otsu", "otsu", "unet", "unet"],
                              "native_dice": [0.5, 0.6, 0.9, 0.7], "dsb": [0.1, 0.2, 0.3, 0.4]})
    wide = side_by_side(per_image, pd.Series({"a": "histology", "b": "fluorescence"}))
    assert list(wide.columns) == ["id", "modality", "otsu_native_dice", "unet_native_dice", "otsu_dsb", "unet_dsb"]
    assert wide.values.tolist() == [["b", "fluorescence", 0.5, 0.9, 0.1, 0.3],
                                    ["a", "histology", 0.6, 0.7, 0.2, 0.4]]


def test_pick_gallery_spreads_worst_to_best():
    import pandas as pd

    per_image = pd.DataFrame({"id": list("abcdefg"), "method": "unet", "dice": [0.9, 0.1, 0.5, 0.7, 0.3, 0.8, 0.2]})
    assert pick_gallery(per_image, 3) == ["b", "c", "a"]
    assert len(pick_gallery(per_image, 10)) == 7


def test_score_native_images_of_different_sizes():
    small_t = np.array([[1, 1], [0, 0]])
    small_p = np.array([[1, 0], [0, 0]])            # IoU 1/2: no instance match; Dice 2/3
    big = np.zeros((3, 5), int)
    big[0, :2], big[2, 3:] = 1, 2                   # two nuclei, predicted exactly
    summary, rows = score_native([small_t, big], [small_p, big], ["s", "b"])
    assert summary["pixel"]["mean"]["dice"] == pytest.approx((2 / 3 + 1) / 2)
    # pooled: tp 1 + 4, fp 0, fn 1 -> Dice 10/11
    assert summary["pixel"]["pooled"]["dice"] == pytest.approx(10 / 11)
    assert summary["instance"]["dsb"] == pytest.approx(0.5)
    assert list(rows["n_true"]) == [1, 2] and list(rows["count_error"]) == [0, 0]


def test_truth_from_rle_uses_height_and_width():
    import pandas as pd

    a = np.zeros((3, 4), np.uint8)
    a[0, 0] = 1
    b = np.zeros((3, 4), np.uint8)
    b[2, 1:3] = 1
    solution = pd.DataFrame({"ImageId": ["x", "x", "y"], "EncodedPixels": [rle_encode(a), rle_encode(b), "1 1"],
                             "Height": [3, 3, 9], "Width": [4, 4, 9]})
    labels = truth_from_rle(solution, "x", (0, 0))
    assert labels.shape == (3, 4) and labels[0, 0] == 1 and (labels == 2).sum() == 2


def test_tta_averages_the_four_flips():
    import keras

    from nucseg.evaluate import predict_probs

    images = np.random.default_rng(0).random((3, 32, 32)).astype(np.float32)
    inputs = keras.Input((32, 32, 1))
    pointwise = keras.Model(inputs, keras.layers.Rescaling(4.0, offset=-2.0)(inputs))
    np.testing.assert_allclose(predict_probs(pointwise, images, tta=True), predict_probs(pointwise, images), atol=1e-6)
    # a model that looks one pixel up and one to the left is not flip-invariant: TTA averages it
    # with its three mirrors, which look down, right, or both
    shifted = keras.Model(inputs, keras.layers.Lambda(
        lambda x: keras.ops.roll(keras.ops.roll(x, 1, axis=1), 1, axis=2) * 4.0 - 2.0)(inputs))
    plain, tta = predict_probs(shifted, images), predict_probs(shifted, images, tta=True)
    sig = 1 / (1 + np.exp(-(4 * images - 2)))
    expected = sum(np.roll(sig, (dy, dx), (1, 2)) for dy in (1, -1) for dx in (1, -1)) / 4
    np.testing.assert_allclose(tta[:, 1:-1, 1:-1], expected[:, 1:-1, 1:-1], atol=1e-5)
    assert not np.allclose(plain, tta)


def test_a_stage_model_that_does_not_load_names_the_file_and_the_fix(tmp_path):
    """Cut short or overwritten, the pipeline's model is one line with its restore fix; without a
    fix (nucseg predict words its own), the loader's own error goes on; a missing one is
    FileNotFoundError (the stages' 'make it with dvc repro')."""
    from nucseg.evaluate import load_model
    from nucseg.io import NucsegError

    (tmp_path / "unet.keras").write_bytes(b"not a model")
    with pytest.raises(NucsegError, match=rf"^{tmp_path / 'unet.keras'}: not a readable model \(.+\); restore it$"):
        load_model(tmp_path / "unet.keras", fix="restore it")
    with pytest.raises(Exception) as exc:
        load_model(tmp_path / "unet.keras")
    assert not isinstance(exc.value, NucsegError)
    (tmp_path / "unet.tflite").write_bytes(b"not a model")   # LiteRT's loader words its own, with a fix
    with pytest.raises(NucsegError, match=rf"^{tmp_path / 'unet.tflite'}: not a nucseg LiteRT model \(.+\); write one"):
        load_model(tmp_path / "unet.tflite", fix="restore it")
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "gone.tflite", fix="restore it")
