"""Tiny ImageNet's own layout (wnids.txt, words.txt, train/<wnid>/images/,
val/val_annotations.txt) through tools/make_imagenet_lmdb.py, on a small
tree drawn by tests/tiny_tree.py: the inputs (no Caffe needed), then the
LMDBs end to end (skipped when convert_imageset is not built)."""
import json
import os
import subprocess
import sys

import pytest

import tiny_tree
from conftest import BUILD
from gencaffe.data import datum_io, imagenet, imagenet_sources
from gencaffe.data.imagenet_sources import SourceError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(REPO, "tools", "make_imagenet_lmdb.py")
TOOLS = os.path.join(BUILD, "caffe", "tools")
needs_tools = pytest.mark.skipif(
    not all(os.access(os.path.join(TOOLS, t), os.X_OK)
            for t in ("convert_imageset", "compute_image_mean")),
    reason="needs convert_imageset and compute_image_mean built in %s" % TOOLS)


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "tiny-imagenet-200"
    tiny_tree.make(root)
    return root


def problems_of(root, **kwargs):
    with pytest.raises(SourceError) as info:
        imagenet_sources.resolve(str(root), **kwargs)
    return "\n".join(info.value.problems)


def test_classes_in_wnids_order_words_train_and_val_labels(tree):
    sources = imagenet_sources.resolve(str(tree))
    wnids = (tree / "wnids.txt").read_text().split()
    assert wnids != sorted(wnids)                      # the file's order, not sorted
    assert sources.classes == wnids
    assert sources.classes_source == str(tree / "wnids.txt")
    # words.txt names more synsets than the classes: only the classes' are kept
    assert sorted(sources.words) == sorted(wnids)
    assert all(w.startswith("thing ") for w in sources.words.values())
    assert len(sources.train.entries) == 3 * 4
    for rel, label in sources.train.entries:
        assert rel.startswith(wnids[label] + "/images/")
    assert sources.val.root == str(tree / "val" / "images")
    assert sources.val.source["kind"] == "annotations"
    annotations = [line.split("\t") for line in
                   (tree / "val" / "val_annotations.txt").read_text().splitlines()]
    assert sorted(sources.val.entries) == sorted((name, wnids.index(wnid))
                                                 for name, wnid, *_ in annotations)
    assert not sources.train.warnings and not sources.val.warnings


def test_missing_val_annotations_is_named(tree):
    (tree / "val" / "val_annotations.txt").unlink()
    message = problems_of(tree)
    assert str(tree / "val" / "val_annotations.txt") in message
    assert "Tiny ImageNet" in message


def test_a_wnid_with_no_images_is_named(tree):
    wnid = (tree / "wnids.txt").read_text().split()[1]
    for image in (tree / "train" / wnid / "images").iterdir():
        image.unlink()
    message = problems_of(tree)
    assert "hold no image files" in message and wnid in message


def test_a_wnid_without_a_train_folder_is_named(tree):
    with open(tree / "wnids.txt", "a") as handle:
        handle.write("n09999999\n")
    message = problems_of(tree)
    assert "n09999999" in message and "wnids.txt" in message


def test_bad_annotation_lines_and_unknown_wnids_are_named(tree):
    path = tree / "val" / "val_annotations.txt"
    lines = path.read_text().splitlines()
    lines[1] = "val_1.JPEG"                                  # no wnid
    lines[2] = lines[2].replace(lines[2].split("\t")[1], "n01234567")
    path.write_text("\n".join(lines) + "\n")
    message = problems_of(tree)
    assert str(path) in message
    assert "line 2 'val_1.JPEG'" in message and "NAME<TAB>WNID" in message
    assert "line 3 'n01234567'" in message


def test_an_annotated_image_missing_on_disk_is_named(tree):
    (tree / "val" / "images" / "val_0.JPEG").unlink()
    message = problems_of(tree)
    assert "val_0.JPEG" in message and "missing" in message


def test_wrong_layout_is_named(tmp_path):
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "wnids.txt").write_text("n09999001\n")
    message = problems_of(tmp_path / "flat")
    assert "train folder not found" in message and str(tmp_path / "flat" / "train") in message


# ---------------------------------------------------------------- end to end

def run_tool(*args):
    return subprocess.run([sys.executable, TOOL, *args, "--no-progress", "--jobs", "1",
                           "--caffe-tools", TOOLS], capture_output=True, text=True)


@needs_tools
def test_lmdbs_at_64_with_three_channels_and_a_corrupt_jpeg_named(tree, tmp_path):
    wnids = (tree / "wnids.txt").read_text().split()
    bad = tree / "train" / wnids[2] / "images" / ("%s_3.JPEG" % wnids[2])
    bad.write_bytes(bad.read_bytes()[:300])                 # truncated
    out = tmp_path / "lmdb"
    result = run_tool(str(tree), "--out-dir", str(out))
    assert result.returncode == 0, result.stderr
    assert "images resized to 64x64 (the default for this layout" in result.stdout
    assert "%s/images/%s" % (wnids[2], bad.name) in result.stdout      # named
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["train"]["written"] == 3 * 4 - 1
    assert manifest["counts"]["val"]["written"] == 3 * 2
    assert manifest["mean"]["shape"] == [3, 64, 64]
    assert (out / "classes.txt").read_text().split() == wnids
    assert [line.split()[0] for line in (out / "synset_words.txt").read_text().splitlines()] \
        == wnids
    shapes = {datum_io.datum_shape(d) for _, d in datum_io.iter_datums(str(out / "train_lmdb"))}
    assert shapes == {(3, 64, 64)}                          # the greyscale image too
    assert sorted(datum_io.read_labels(str(out / "val_lmdb"))) == [0, 0, 1, 1, 2, 2]


@needs_tools
def test_a_broken_annotation_file_leaves_nothing(tree, tmp_path):
    (tree / "val" / "val_annotations.txt").write_text("val_0.JPEG\n")
    out = tmp_path / "lmdb"
    result = run_tool(str(tree), "--out-dir", str(out))
    assert result.returncode == 1
    assert "val_annotations.txt" in result.stderr
    assert not out.exists()


def test_default_size_is_caffes_for_other_layouts():
    sources = imagenet_sources.Sources([], "/x/synsets.txt", {}, None, None)
    assert imagenet.default_size(sources) == (256, 256)
    sources.classes_source = "/x/wnids.txt"
    assert imagenet.default_size(sources) == (64, 64)
