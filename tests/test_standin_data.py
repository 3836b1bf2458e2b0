"""The stand-in ImageNet generator (gencaffe.data.standin, tools/make_standin_imagenet.py):
determinism, layout and label files, the corrupt files, atomic output, no-op reruns."""
import filecmp
import io
import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from gencaffe.data import image_check, standin

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = standin.StandinConfig(classes=4, train_per_class=3, val_per_class=2, min_size=32,
                             max_size=48, corrupt=4, seed=7)


def tree_files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root)
                  for d, _, files in os.walk(root) for f in files)


@pytest.fixture(scope="module")
def tiny_tree(tmp_path_factory):
    out = tmp_path_factory.mktemp("standin") / "tree"
    assert standin.generate(str(out), TINY, log=lambda _: None) is True
    return out


def test_class_table_is_wnid_like_sorted_and_shape_by_texture():
    table = standin.class_table(standin.MAX_CLASSES)
    wnids = [c["wnid"] for c in table]
    assert wnids == sorted(wnids) and len(set(wnids)) == len(wnids)
    assert all(len(w) == 9 and w[0] == "n" and w[1:].isdigit() for w in wnids)
    assert len({(c["shape"], c["texture"]) for c in table}) == standin.MAX_CLASSES
    # the first classes of a small set are all different shapes
    assert len({c["shape"] for c in table[:len(standin.SHAPES)]}) == len(standin.SHAPES)


def test_same_seed_same_bytes_whatever_the_worker_count(tmp_path, tiny_tree):
    other = tmp_path / "again"
    standin.generate(str(other), TINY, jobs=2, log=lambda _: None)
    files = tree_files(tiny_tree)
    assert files == tree_files(other)
    match, mismatch, errors = filecmp.cmpfiles(tiny_tree, other, files, shallow=False)
    assert not mismatch and not errors
    manifest = standin.read_manifest(str(tiny_tree))
    assert manifest["sha256_of_file_list"] == standin.read_manifest(str(other))["sha256_of_file_list"]


def test_another_seed_draws_other_images(tmp_path, tiny_tree):
    config = standin.StandinConfig(**dict(TINY.as_dict(), seed=8))
    standin.generate(str(tmp_path / "seed8"), config, log=lambda _: None)
    a = (tiny_tree / "train" / "n99000000" / "n99000000_1.JPEG").read_bytes()
    b = (tmp_path / "seed8" / "train" / "n99000000" / "n99000000_1.JPEG").read_bytes()
    assert a != b


def test_layout_and_caffe_aux_label_files(tiny_tree):
    manifest = standin.read_manifest(str(tiny_tree))
    synsets = (tiny_tree / "synsets.txt").read_text().split()
    assert synsets == sorted(os.listdir(tiny_tree / "train")) and len(synsets) == TINY.classes
    words = (tiny_tree / "synset_words.txt").read_text().splitlines()
    assert [w.split()[0] for w in words] == synsets
    val_lines = [line.split() for line in (tiny_tree / "val.txt").read_text().splitlines()]
    val_files = sorted(os.listdir(tiny_tree / "val"))
    assert sorted(name for name, _ in val_lines) == val_files
    assert all(0 <= int(label) < TINY.classes for _, label in val_lines)
    n_corrupt_val = sum(1 for c in manifest["corrupt"] if c["split"] == "val")
    assert len(val_files) == TINY.classes * TINY.val_per_class + n_corrupt_val
    train_lines = [line.split() for line in (tiny_tree / "train.txt").read_text().splitlines()]
    for rel, label in train_lines:  # "<wnid>/<file> LABEL", label = index of the wnid
        assert rel.split("/")[0] == synsets[int(label)]
        assert (tiny_tree / "train" / rel).is_file()
    clean = [rel for rel, _ in train_lines]
    assert len(clean) == TINY.classes * TINY.train_per_class + len(manifest["corrupt"]) - n_corrupt_val
    sizes = {Image.open(tiny_tree / "train" / rel).size for rel in clean[:6]
             if not any(c["path"] == "train/" + rel for c in manifest["corrupt"])}
    assert all(TINY.min_size <= s <= TINY.max_size for size in sizes for s in size)
    assert len(sizes) > 1  # sizes vary


def test_corrupt_files_are_as_listed_and_the_decode_check_finds_exactly_them(tiny_tree):
    manifest = standin.read_manifest(str(tiny_tree))
    kinds = [c["kind"] for c in manifest["corrupt"]]
    assert sorted(kinds) == ["not-an-image", "truncated", "truncated", "zero-byte"]
    assert {c["split"] for c in manifest["corrupt"]} == {"train", "val"}
    for c in manifest["corrupt"]:
        data = (tiny_tree / c["path"]).read_bytes()
        if c["kind"] == "zero-byte":
            assert data == b""
        elif c["kind"] == "not-an-image":
            assert data == standin.NOT_AN_IMAGE
        else:  # headers intact (the format is known), pixels cut off
            assert Image.open(io.BytesIO(data)).format == "JPEG"
            with pytest.raises(OSError):
                Image.open(io.BytesIO(data)).load()
    everything = [str(tiny_tree / rel) for rel in tree_files(tiny_tree) if rel.endswith(".JPEG")]
    bad = image_check.check_images(everything)
    assert sorted(os.path.relpath(p, tiny_tree) for p, _ in bad) == \
        sorted(c["path"] for c in manifest["corrupt"])
    reasons = {os.path.relpath(p, tiny_tree): r for p, r in bad}
    for c in manifest["corrupt"]:
        assert {"truncated": "truncated", "zero-byte": "zero-byte",
                "not-an-image": "not an image"}[c["kind"]] in reasons[c["path"]]


def test_rerun_is_a_no_op_and_other_options_need_force(tmp_path, tiny_tree):
    stamp = os.stat(tiny_tree / standin.MANIFEST_NAME).st_mtime_ns
    assert standin.generate(str(tiny_tree), TINY, log=lambda _: None) is False
    assert os.stat(tiny_tree / standin.MANIFEST_NAME).st_mtime_ns == stamp

    out = tmp_path / "tree"
    standin.generate(str(out), TINY, log=lambda _: None)
    bigger = standin.StandinConfig(**dict(TINY.as_dict(), val_per_class=3))
    with pytest.raises(standin.StandinError, match="other options.*--force"):
        standin.generate(str(out), bigger, log=lambda _: None)
    assert standin.generate(str(out), bigger, force=True, log=lambda _: None) is True
    assert standin.read_manifest(str(out))["config"]["val_per_class"] == 3
    assert [p for p in os.listdir(tmp_path) if p.startswith(".")] == []  # no leftovers


def test_a_folder_that_is_not_ours_is_refused(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(standin.StandinError, match="not written by this generator"):
        standin.generate(str(tmp_path / "mine"), TINY, force=True, log=lambda _: None)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_a_failure_midway_leaves_nothing(tmp_path, monkeypatch):
    real = standin.file_bytes
    calls = []

    def failing(config, item):
        calls.append(item)
        if len(calls) == 5:
            raise RuntimeError("disk full (simulated)")
        return real(config, item)

    monkeypatch.setattr(standin, "file_bytes", failing)
    with pytest.raises(RuntimeError, match="simulated"):
        standin.generate(str(tmp_path / "tree"), TINY, log=lambda _: None)
    assert os.listdir(tmp_path) == []


def test_bad_options_are_explained():
    with pytest.raises(standin.StandinError, match="--classes must be between 2 and 24"):
        standin.generate("/nonexistent/x", standin.StandinConfig(classes=30))
    with pytest.raises(standin.StandinError, match="min-size <= max-size"):
        standin.generate("/nonexistent/x", standin.StandinConfig(min_size=300, max_size=200))


def test_cli(tmp_path):
    cmd = [sys.executable, os.path.join(REPO, "tools", "make_standin_imagenet.py"),
           "--out-dir", str(tmp_path / "t"), "--classes", "2", "--train-per-class", "1",
           "--val-per-class", "1", "--min-size", "24", "--max-size", "24", "--corrupt", "1",
           "--no-progress"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    manifest = json.loads((tmp_path / "t" / standin.MANIFEST_NAME).read_text())
    assert manifest["files"] == {"train": 3, "val": 2}
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert second.returncode == 0 and "nothing to do" in second.stdout
    bad = subprocess.run(cmd[:-1] + ["--classes", "1"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "--classes must be between" in bad.stderr


def test_colour_cue_ties_the_object_hue_to_the_class_and_nothing_else():
    import colorsys
    import numpy as np
    assert standin.StandinConfig(classes=4).hue_band(0) is None
    assert standin.StandinConfig(classes=4, colour_cue=1.0).hue_band(1) == (0.25, 0.25)
    assert standin.StandinConfig(classes=4, colour_cue=0.5).hue_band(2) == (0.5, 0.625)
    for label in range(4):
        band = standin.StandinConfig(classes=4, colour_cue=1.0).hue_band(label)
        cued, free = np.random.default_rng(label), np.random.default_rng(label)
        for _ in range(200):
            h, s, v = colorsys.rgb_to_hsv(*(standin._random_colour(cued, hue_band=band) / 255.0))
            h0, s0, v0 = colorsys.rgb_to_hsv(*(standin._random_colour(free) / 255.0))
            distance = abs((h - band[0] + 0.5) % 1.0 - 0.5)
            assert distance <= band[1] / 2 + 1e-9
            # the same draws: saturation and value as without the cue
            assert (s, v) == pytest.approx((s0, v0))
    # the default set's options (and so its manifest) do not mention the cue
    assert "colour_cue" not in standin.StandinConfig().as_dict()
    assert standin.StandinConfig(colour_cue=0.5).as_dict()["colour_cue"] == 0.5
    with pytest.raises(standin.StandinError, match="--colour-cue must be between 0 and 1"):
        standin.StandinConfig(colour_cue=1.5).validate()


def test_a_colour_cue_draws_other_objects_on_the_same_backgrounds(tmp_path, tiny_tree):
    config = standin.StandinConfig(**dict(TINY.as_dict(), colour_cue=1.0))
    standin.generate(str(tmp_path / "cue"), config, log=lambda _: None)
    name = os.path.join("train", "n99000001", "n99000001_1.JPEG")
    cued = Image.open(tmp_path / "cue" / name).convert("RGB")
    plain = Image.open(tiny_tree / name).convert("RGB")
    assert cued.size == plain.size and cued.tobytes() != plain.tobytes()
    assert standin.read_manifest(str(tmp_path / "cue"))["config"]["colour_cue"] == 1.0
