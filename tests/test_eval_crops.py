"""5-/10-crop evaluation (gencaffe.experiments.crops, eval_crops, tools/eval_crops.py).

The math is checked on arrays whose values name their position; the pycaffe
path against an independent computation: each crop cut by hand at hard-coded
offsets from the mean-subtracted image and fed through the net one at a time.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from gencaffe.experiments import crops

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------- math (no Caffe)

def test_crop_offsets_are_caffes_centre_and_the_four_corners():
    assert crops.crop_offsets(256, 256, 227) == [(14, 14), (0, 0), (0, 29), (29, 0), (29, 29)]
    assert crops.crop_offsets(10, 13, 8, 9) == [(1, 2), (0, 0), (0, 4), (2, 0), (2, 4)]
    with pytest.raises(ValueError, match="larger than the image"):
        crops.crop_offsets(200, 256, 227)


def test_crop_views_cut_where_the_offsets_say_and_mirror_the_width():
    h, w = 7, 9
    image = np.arange(2 * h * w, dtype=np.float32).reshape(1, 2, h, w)   # value = c*h*w + y*w + x
    views = crops.crop_views(image, 4, 5, mirror=True)
    assert views.shape == (1, 10, 2, 4, 5)
    for k, (y, x) in enumerate([(1, 2), (0, 0), (0, 4), (3, 0), (3, 4)]):
        np.testing.assert_array_equal(views[0, k], image[0, :, y:y + 4, x:x + 5])
        np.testing.assert_array_equal(views[0, k + 5], image[0, :, y:y + 4, x:x + 5][..., ::-1])
    assert crops.crop_views(image, 4, 5).shape == (1, 5, 2, 4, 5)


def test_average_over_crops_is_per_image_and_topk_uses_caffes_tie_rule():
    outputs = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1]], dtype=np.float32)
    np.testing.assert_allclose(crops.average_over_crops(outputs, 2), [[.5, .5, 0], [0, 0, 1]])
    probs = np.array([[0.5, 0.3, 0.2], [0.2, 0.2, 0.6], [0.4, 0.4, 0.2]])
    np.testing.assert_array_equal(crops.topk_correct(probs, [0, 0, 1], 1), [True, False, True])
    np.testing.assert_array_equal(crops.topk_correct(probs, [2, 0, 2], 2), [False, True, False])
    tally = crops.Tally((1, 2))
    tally.add(probs, [0, 0, 1])
    tally.add(probs[:1], [2])
    assert tally.n == 4 and tally.error(1) == pytest.approx(50.0) and tally.error(2) == 25.0


# ---------------------------------------------------------------- through pycaffe

try:
    import caffe
    if not hasattr(caffe, "Net"):   # the repo's caffe/ overlay folder, not pycaffe
        caffe = None
except ImportError:   # no pycaffe built: the math tests above still run
    caffe = None
from gencaffe.data import datum_io  # noqa: E402
from conftest import png_rgb, write_lmdb  # noqa: E402
from gencaffe.experiments import eval_crops  # noqa: E402

needs_caffe = pytest.mark.skipif(caffe is None, reason="pycaffe not built")

N_IMAGES, SIDE, CROP, CLASSES = 12, 11, 8, 7
# centre (Caffe rounds the odd margin 3 down), TL, TR, BL, BR of 11 -> 8
HAND_OFFSETS = [(1, 1), (0, 0), (0, 3), (3, 0), (3, 3)]


def deploy_net(path, classes=CLASSES, seed=5):
    from caffe import layers as L
    spec = caffe.NetSpec()
    spec.data = L.Input(shape=dict(dim=[4, 3, CROP, CROP]))
    spec.conv = L.Convolution(spec.data, num_output=4, kernel_size=3,
                              weight_filler=dict(type="gaussian", std=0.01))
    spec.score = L.InnerProduct(spec.conv, num_output=classes,
                                weight_filler=dict(type="gaussian", std=0.01),
                                bias_filler=dict(type="gaussian", std=0.5))
    spec.prob = L.Softmax(spec.score)
    with open(path, "w") as handle:
        handle.write(str(spec.to_proto()))
    caffe.set_random_seed(seed)
    caffe.set_mode_cpu()
    return caffe.Net(path, caffe.TEST)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    rng = np.random.default_rng(11)
    images = rng.integers(0, 256, (N_IMAGES, 3, SIDE, SIDE), dtype=np.uint8)
    labels = rng.integers(0, CLASSES, N_IMAGES)
    mean = rng.uniform(90, 160, (3, SIDE, SIDE)).astype(np.float32)
    net = deploy_net(str(root / "deploy.prototxt"))
    net.save(str(root / "weights.caffemodel"))
    write_lmdb(root / "raw_lmdb", images, labels)
    write_lmdb(root / "png_lmdb", images, labels, encoded=True)
    datum_io.write_mean(str(root / "mean.binaryproto"), mean)
    return dict(root=root, images=images, labels=labels, mean=mean, net=net)


def expected_probs(net, images, subtract, mirror=False):
    """Each crop alone through the net, cut at hand-written offsets; averaged per image."""
    net.blobs["data"].reshape(1, 3, CROP, CROP)
    out = []
    for image in images:
        x = image.astype(np.float32) - subtract
        views = [x[:, y:y + CROP, c:c + CROP] for y, c in HAND_OFFSETS]
        if mirror:
            views += [v[:, :, ::-1] for v in views]
        probs = []
        for view in views:
            net.blobs["data"].data[0] = view
            probs.append(net.forward()["prob"][0].copy())
        out.append(np.mean(probs, axis=0))
    return np.array(out)


def errors(probs, labels, k):
    ranked = np.argsort(-probs, axis=1)[:, :k]
    return 100.0 * np.mean([label not in row for row, label in zip(ranked, labels)])


def config(s, **overrides):
    base = dict(model=str(s["root"] / "deploy.prototxt"), weights=str(s["root"] / "weights.caffemodel"),
                lmdb=str(s["root"] / "raw_lmdb"), mean_file=str(s["root"] / "mean.binaryproto"),
                batch_size=5)   # 12 images: batches of 5, 5 and a partial 2
    base.update(overrides)
    return eval_crops.EvalConfig(**base)


@needs_caffe
@pytest.mark.parametrize("ten_crop", [False, True])
@pytest.mark.parametrize("lmdb", ["raw_lmdb", "png_lmdb"])
def test_lmdb_matches_an_independent_per_crop_computation(setup, ten_crop, lmdb):
    result = eval_crops.evaluate(config(setup, lmdb=str(setup["root"] / lmdb), ten_crop=ten_crop),
                                log=lambda _: None, keep_probs=True)
    want = expected_probs(setup["net"], setup["images"], setup["mean"], mirror=ten_crop)
    np.testing.assert_allclose(result["probs"], want, rtol=1e-5, atol=1e-7)
    assert result["n_images"] == N_IMAGES and result["crops"] == (10 if ten_crop else 5)
    assert result["top1_error"] == pytest.approx(errors(want, setup["labels"], 1), abs=1e-3)
    assert result["top5_error"] == pytest.approx(errors(want, setup["labels"], 5), abs=1e-3)
    assert 0 < result["top5_error"] < result["top1_error"] < 100   # neither trivial nor perfect


@needs_caffe
def test_per_channel_mean_values(setup):
    values = [100.0, 120.0, 140.0]
    result = eval_crops.evaluate(config(setup, mean_file=None, mean_values=values),
                                log=lambda _: None, keep_probs=True)
    want = expected_probs(setup["net"], setup["images"], np.array(values, np.float32)[:, None, None])
    np.testing.assert_allclose(result["probs"], want, rtol=1e-5, atol=1e-7)


@needs_caffe
def test_image_folder_with_a_label_file_names_unreadable_images(setup, tmp_path):
    folder = tmp_path / "val"
    folder.mkdir()
    lines = []
    for i, (image, label) in enumerate(zip(setup["images"], setup["labels"])):
        (folder / ("img_%02d.png" % i)).write_bytes(png_rgb(image))
        lines.append("img_%02d.png %d" % (i, label))
        if i == 3:
            (folder / "broken.png").write_bytes(b"not a png")
            lines.append("broken.png 0")
    (tmp_path / "val.txt").write_text("\n".join(lines) + "\n")
    result = eval_crops.evaluate(config(setup, lmdb=None, images=str(folder),
                                       labels=str(tmp_path / "val.txt"), resize=(SIDE, SIDE)),
                                log=lambda _: None, keep_probs=True)
    assert result["skipped"] == [{"path": "broken.png", "reason": "not an image (no known image format)"}]
    want = expected_probs(setup["net"], setup["images"], setup["mean"])
    np.testing.assert_allclose(result["probs"], want, rtol=1e-5, atol=1e-7)


@needs_caffe
def test_class_count_mismatch_with_the_data_is_refused(setup, tmp_path):
    (tmp_path / "classes.txt").write_text("".join("n%08d\n" % i for i in range(5)))
    with pytest.raises(eval_crops.EvalError,
                       match=r"class count mismatch: the net .* outputs 7 classes \(blob 'prob'\) "
                             r"but the data's .*classes.txt lists 5"):
        eval_crops.evaluate(config(setup, classes=str(tmp_path / "classes.txt")), log=lambda _: None)


@needs_caffe
def test_classes_and_mean_beside_our_lmdb_are_found(setup, tmp_path):
    import shutil
    folder = tmp_path / "data"
    folder.mkdir()
    shutil.copytree(setup["root"] / "raw_lmdb", folder / "val_lmdb")
    shutil.copy(setup["root"] / "mean.binaryproto", folder / "mean.binaryproto")
    (folder / "manifest.json").write_text(json.dumps({"tool": "gencaffe.data.imagenet"}))
    (folder / "classes.txt").write_text("".join("n%08d\n" % i for i in range(6)))
    with pytest.raises(eval_crops.EvalError, match="outputs 7 classes .* lists 6"):
        eval_crops.evaluate(config(setup, lmdb=str(folder / "val_lmdb"), mean_file=None),
                           log=lambda _: None)
    (folder / "classes.txt").write_text("".join("n%08d\n" % i for i in range(7)))
    result = eval_crops.evaluate(config(setup, lmdb=str(folder / "val_lmdb"), mean_file=None),
                                log=lambda _: None)
    assert result["mean"] == str(folder / "mean.binaryproto")
    assert result["data"]["classes_file"] == str(folder / "classes.txt")


@needs_caffe
def test_labels_outside_the_net_and_wrong_weights_or_mean(setup, tmp_path):
    write_lmdb(tmp_path / "big_labels", setup["images"][:3], [1, 9, 2])
    with pytest.raises(eval_crops.EvalError, match="image #1 of .* has label 9, outside the net's 7"):
        eval_crops.evaluate(config(setup, lmdb=str(tmp_path / "big_labels")), log=lambda _: None)
    deploy_net(str(tmp_path / "five.prototxt"), classes=5).save(str(tmp_path / "five.caffemodel"))
    with pytest.raises(eval_crops.EvalError, match="layer 'score' blob 0: the weights have shape "
                                                  "5x144, the net 7x144"):
        eval_crops.evaluate(config(setup, weights=str(tmp_path / "five.caffemodel")),
                           log=lambda _: None)
    datum_io.write_mean(str(tmp_path / "m.binaryproto"), np.zeros((3, 12, 12), np.float32))
    with pytest.raises(eval_crops.EvalError, match="the mean .* is 3x12x12 .* the images are 3x11x11"):
        eval_crops.evaluate(config(setup, mean_file=str(tmp_path / "m.binaryproto")),
                           log=lambda _: None)
    with pytest.raises(eval_crops.EvalError, match="no mean given"):
        eval_crops.evaluate(config(setup, mean_file=None), log=lambda _: None)
    with pytest.raises(eval_crops.EvalError, match="LMDB not found"):
        eval_crops.evaluate(config(setup, lmdb=str(tmp_path / "nope")), log=lambda _: None)


@needs_caffe
def test_cli_writes_json_and_markdown(setup, tmp_path):
    out = tmp_path / "res.json"
    run = subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "eval_crops.py"),
         "--model", str(setup["root"] / "deploy.prototxt"),
         "--weights", str(setup["root"] / "weights.caffemodel"),
         "--lmdb", str(setup["root"] / "raw_lmdb"),
         "--mean-file", str(setup["root"] / "mean.binaryproto"),
         "--batch-size", "4", "--out", str(out), "--no-progress"],
        capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    result = json.loads(out.read_text())
    want = expected_probs(setup["net"], setup["images"], setup["mean"])
    assert result["top1_error"] == pytest.approx(errors(want, setup["labels"], 1), abs=1e-3)
    assert result["crops"] == 5 and result["crop_size"] == [CROP, CROP]
    row = (tmp_path / "res.md").read_text().splitlines()[-1]
    assert row.startswith("| %s | %s | %s |" % (setup["root"] / "deploy.prototxt",
                                                 setup["root"] / "weights.caffemodel",
                                                 setup["root"] / "raw_lmdb"))
    assert "| %d | %.2f | %.2f | 5 (8x8 of 11x11) |" % (
        N_IMAGES, result["top1_error"], result["top5_error"]) in row
    assert row in run.stdout
