import numpy as np
import pytest
from PIL import Image

from conftest import SHARED_ZIP, disk, have_shared_zip
from nucseg.io import NucsegError, RawSource
from nucseg.masks import build_masks, label_image, resize_mask


def test_label_image_numbers_each_nucleus():
    a, b = disk((20, 20), (5, 5), 3), disk((20, 20), (14, 14), 4)
    labels = label_image([a, b])
    assert labels.dtype == np.uint16
    assert set(np.unique(labels)) == {0, 1, 2}
    assert (labels == 1).sum() == a.sum() and (labels == 2).sum() == b.sum()
    # where two masks overlap (DSB2018 has none), the later one wins
    c = disk((20, 20), (8, 5), 3)
    overlap = a & c
    assert overlap.any() and (label_image([a, c])[overlap] == 2).all()


def test_resize_mask_thresholds_coverage_at_one_half():
    mask = np.zeros((4, 4), np.uint8)
    mask[:, :2] = 1          # left half: each left 2x2 block fully covered
    mask[0, 2] = 1           # one pixel of the top-right block: 1/4 covered
    mask[2:, 2:] = [[1, 1], [1, 0]]  # 3/4 of the bottom-right block
    np.testing.assert_array_equal(resize_mask(mask, 2), [[1, 0], [1, 1]])
    mask[0, 3] = 1           # the top-right block now exactly half covered: a nucleus pixel ("at least half")
    np.testing.assert_array_equal(resize_mask(mask, 2), [[1, 1], [1, 1]])


def test_resize_mask_covers_the_union_where_per_nucleus_resizing_leaves_fractions():
    from PIL import Image

    # two nuclei share the top-right 2x2 block, a quarter of it and half of it: together 3/4
    a, b = np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8)
    a[:2, :2], a[0, 2], b[:2, 3] = 1, 1, 1
    np.testing.assert_array_equal(resize_mask(label_image([a, b]) > 0, 2), [[1, 1], [0, 0]])
    apart = sum(np.asarray(Image.fromarray(n.astype(np.float32)).resize((2, 2), Image.BOX)) for n in (a, b))
    np.testing.assert_allclose(apart, [[1, 0.75], [0, 0]])   # each resized, then added up

    shape = (101, 133)
    nuclei = [disk(shape, (30, 30), 9), disk(shape, (31, 50), 9), disk(shape, (70, 100), 5)]
    ours = resize_mask(label_image(nuclei) > 0, 32)
    assert set(np.unique(ours)) <= {0, 1}
    # the notebook's way: resize each nucleus, then add them up
    summed = sum(np.asarray(Image.fromarray(n.astype(np.float32)).resize((32, 32), Image.BILINEAR))
                 for n in nuclei)
    assert len(np.unique(summed)) > 2


def test_build_masks_matches_the_nuclei(kaggle_zip, samples):
    source = RawSource(kaggle_zip)
    masks, labels = build_masks(source, img_size=32, jobs=2)
    assert masks.shape == (len(samples), 32, 32) and set(np.unique(masks)) <= {0, 1}
    assert source.ids == sorted(samples)
    for i, image_id in enumerate(source.ids):   # each image's own union of nuclei, resized, in order
        np.testing.assert_array_equal(masks[i], resize_mask(np.any(samples[image_id][1], axis=0), 32))
    for image_id, (image, nuclei) in samples.items():
        assert labels[image_id].shape == image.shape[:2]
        assert labels[image_id].max() == len(nuclei)
        np.testing.assert_array_equal(labels[image_id] > 0, np.any(nuclei, axis=0))


def test_mask_with_wrong_size_names_the_file(kaggle_dir, samples):
    from conftest import png_bytes

    bad = sorted(samples)[3]
    (kaggle_dir / bad / "masks" / "m000.png").write_bytes(png_bytes(np.zeros((10, 12), np.uint8)))
    with pytest.raises(NucsegError) as exc:
        build_masks(RawSource(kaggle_dir), img_size=32, jobs=1)
    message = str(exc.value)
    assert "\n" not in message
    assert f"{bad}/masks/m000.png is 12x10 but its image is 80x64" in message


def test_real_masks_of_three_images(shared_zip, tmp_path):
    from conftest import subset_zip

    source = RawSource(subset_zip(shared_zip, tmp_path / "s.zip", 3))
    masks, labels = build_masks(source, img_size=128, jobs=1)
    for i, image_id in enumerate(source.ids):
        assert labels[image_id].max() == len(source.masks[image_id])
        assert labels[image_id].shape == source.image_size(image_id)
        assert 0.01 < masks[i].mean() < 0.9


def test_a_label_image_among_the_masks_is_refused(kaggle_dir, samples):
    """One PNG numbering its nuclei 1..K (what Fiji, QuPath or Cellpose export) would count as a
    single nucleus."""
    from conftest import png_bytes

    bad = sorted(samples)[2]
    nuclei = samples[bad][1]
    for old in (kaggle_dir / bad / "masks").iterdir():
        old.unlink()
    labels = sum((k + 1) * n.astype(np.uint8) for k, n in enumerate(nuclei))
    (kaggle_dir / bad / "masks" / "labels.png").write_bytes(png_bytes(labels))
    with pytest.raises(NucsegError) as exc:
        build_masks(RawSource(kaggle_dir), img_size=32, jobs=1)
    message = str(exc.value)
    assert "\n" not in message
    assert f"{bad}/masks/labels.png holds values 1 to {len(nuclei)} besides 0, as a label image does" in message
    assert "write each label as its own PNG" in message


def test_a_mask_that_is_not_a_png_is_refused(kaggle_dir, samples):
    bad = sorted(samples)[1]
    (kaggle_dir / bad / "masks" / "m000.png").rename(kaggle_dir / bad / "masks" / "m000.tif")
    with pytest.raises(NucsegError, match=rf"{bad}/masks/m000.tif: a mask that is not a PNG; .*save it as PNG"):
        RawSource(kaggle_dir)
    (kaggle_dir / bad / "masks" / "m000.tif").rename(kaggle_dir / bad / "masks" / "notes.txt")
    assert len(RawSource(kaggle_dir).masks[bad]) == len(samples[bad][1]) - 1     # not an image: left alone


@pytest.mark.parametrize("kind", ["all nuclei", "all nuclei beside them", "inverted", "all"])
def test_a_users_mask_of_all_nuclei_or_inverted_is_refused(kaggle_dir, samples, kind):
    """A thresholder's binary mask of every nucleus in one file (alone, or left beside the
    nuclei's own masks, which it would overwrite), or a mask with the background nonzero (an
    empty one saved inverted: all of it), would be scored as one nucleus (DSB 0 however good the
    segmentation): refused in a user's data. The pipeline's stage1_train has at most 2 objects in
    a mask and none over 9% of its image, so its copy is not checked."""
    from conftest import png_bytes
    from nucseg.masks import read_labels

    bad = sorted(samples)[2]
    nuclei = samples[bad][1]
    if kind != "all nuclei beside them":
        for old in (kaggle_dir / bad / "masks").iterdir():
            old.unlink()
    union = np.any(nuclei, axis=0)
    mask = {"inverted": ~union, "all": np.ones_like(union)}.get(kind, union)
    (kaggle_dir / bad / "masks" / "all.png").write_bytes(png_bytes(mask.astype(np.uint8) * 255))
    expected = {"all nuclei": f"is its image's only mask and holds {len(nuclei)} separate objects, as a mask of "
                              "all nuclei does",
                "all nuclei beside them": f"holds {len(nuclei)} separate objects, 100% of it under the image's "
                                          "other masks, as a mask of all nuclei saved beside them does; .*remove it",
                "inverted": f"covers {(~union).mean():.0%} of its image, up to every edge, around holes: inverted",
                "all": "covers 100% of its image: inverted"}[kind]
    with pytest.raises(NucsegError, match=f"{bad}/masks/all.png {expected}"):
        read_labels(RawSource(kaggle_dir, user_data=True), bad)
    assert read_labels(RawSource(kaggle_dir), bad).max() >= 1   # the pipeline's data: not checked


def test_a_users_nucleus_with_stray_pixels_is_one_nucleus(kaggle_dir, samples):
    """Specks beside a hand-drawn nucleus (under a tenth of it, or 10 px) are not objects of their own."""
    from conftest import png_bytes
    from nucseg.masks import read_labels

    bad = sorted(samples)[2]
    first = sorted((kaggle_dir / bad / "masks").iterdir())[0]
    with Image.open(first) as img:
        mask = np.asarray(img).copy()
    mask[0, 0] = mask[-1, -1] = mask[0, -1] = 255       # three stray pixels in the corners
    first.write_bytes(png_bytes(mask))
    labels = read_labels(RawSource(kaggle_dir, user_data=True), bad)
    assert labels.max() == len(samples[bad][1]) and labels[0, 0] == labels[-1, -1] == 1


def test_a_users_lobed_nucleus_and_a_nucleus_filling_the_field_are_scored(kaggle_dir, samples):
    """A nucleus in three lobes among other masks (a neutrophil's, an apoptotic one in fragments) is
    the user's call: one nucleus, not a mask of all nuclei, which is an image's only mask. A nucleus
    over half the image up to every edge (a high magnification, a crop around one) encloses no hole,
    as an inverted mask does around its nuclei."""
    from conftest import png_bytes
    from nucseg.masks import read_labels

    image_id = sorted(samples)[2]
    image, nuclei = samples[image_id]
    masks = kaggle_dir / image_id / "masks"
    lobes = np.zeros(image.shape[:2], bool)
    lobes[2:6, 2:6] = lobes[2:6, 10:14] = lobes[10:14, 2:6] = True     # three lobes of 16 px, apart
    lobes &= ~np.any(nuclei, axis=0)
    (masks / "m000.png").write_bytes(png_bytes(lobes.astype(np.uint8) * 255))
    labels = read_labels(RawSource(kaggle_dir, user_data=True), image_id)
    assert labels.max() == len(nuclei) and np.unique(labels[lobes]).tolist() == [1]
    for other in sorted(masks.iterdir())[1:]:
        other.unlink()
    with pytest.raises(NucsegError, match="m000.png is its image's only mask and holds 3 separate objects"):
        read_labels(RawSource(kaggle_dir, user_data=True), image_id)
    height, width = image.shape[:2]
    yy, xx = np.mgrid[:height, :width]
    big = (yy - height / 2) ** 2 / (0.6 * height) ** 2 + (xx - width / 2) ** 2 / (0.6 * width) ** 2 <= 1
    assert big.mean() > 0.5 and big[0].any() and big[-1].any() and big[:, 0].any() and big[:, -1].any()
    (masks / "m000.png").write_bytes(png_bytes(big.astype(np.uint8) * 255))
    np.testing.assert_array_equal(read_labels(RawSource(kaggle_dir, user_data=True), image_id), big)


def test_palette_and_colour_masks_are_read_by_their_nucleus(kaggle_dir, samples):
    """ImageJ saves a binary mask without "black background" as nucleus 255 under an inverted
    palette (it shows black on white): read by its stored values, not its colours. Any other
    palette by its colours: a nucleus white at index 0 (as Pillow's quantize orders them), or
    drawn in green, as a palette or as RGB, is its green pixels (red alone read them as background)."""
    from nucseg.masks import read_labels

    image_id = sorted(samples)[1]
    nuclei = samples[image_id][1]
    masks = sorted((kaggle_dir / image_id / "masks").iterdir())
    for k, (path, nucleus) in enumerate(zip(masks, nuclei)):
        if k == 0:     # ImageJ: values 0 and 255, white for 0 and black for 255
            mask = Image.fromarray(nucleus.astype(np.uint8) * 255, mode="P")
            mask.putpalette([255 - v for v in range(256) for _ in range(3)])
        elif k == 1:   # a palette of black and green
            mask = Image.fromarray(nucleus.astype(np.uint8), mode="P")
            mask.putpalette([0, 0, 0, 0, 255, 0])
        elif k == 2:   # white nucleus at index 0, black background at 1
            mask = Image.fromarray((~nucleus).astype(np.uint8), mode="P")
            mask.putpalette([255, 255, 255, 0, 0, 0])
        else:          # green on black, RGB
            mask = Image.fromarray(np.stack([np.zeros_like(nucleus), nucleus, np.zeros_like(nucleus)], -1)
                                   .astype(np.uint8) * 200)
        mask.save(path)
    labels = read_labels(RawSource(kaggle_dir, user_data=True), image_id)
    for k, nucleus in enumerate(nuclei, start=1):
        np.testing.assert_array_equal(labels == k, nucleus)


@pytest.mark.skipif(not have_shared_zip(), reason="needs ../shared's stage1_train.zip")
def test_stage1_train_read_as_a_users_data_is_refused_nowhere():
    """The checks for a user's masks (a mask of all nuclei, an inverted one) pass every one of
    stage1_train's 29,461 masks: real annotations, 2 objects in 11 masks, up to 8.4% of an image."""
    from nucseg.masks import read_labels

    source = RawSource(SHARED_ZIP, user_data=True)
    assert len(source.ids) == 670
    assert sum(int(read_labels(source, image_id).max()) for image_id in source.ids) == 29461
