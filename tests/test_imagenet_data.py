"""tools/make_imagenet_lmdb.py (gencaffe.data.imagenet, imagenet_sources, caffe_convert)
on a tiny stand-in tree: input checks (no Caffe needed), then convert_imageset /
compute_image_mean end to end (skipped when they are not built)."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import BUILD
from gencaffe.data import imagenet, imagenet_sources, standin
from gencaffe.data.imagenet_sources import SourceError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.path.join(BUILD, "caffe", "tools")
CONFIG = standin.StandinConfig(classes=3, train_per_class=5, val_per_class=2, min_size=40,
                               max_size=60, corrupt=4, seed=3)
SIZE = 24

needs_tools = pytest.mark.skipif(
    not all(os.access(os.path.join(TOOLS, t), os.X_OK)
            for t in ("convert_imageset", "compute_image_mean")),
    reason="needs convert_imageset and compute_image_mean built in %s" % TOOLS)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("imagenet") / "tree"
    standin.generate(str(root), CONFIG, log=lambda _: None)
    return root


@pytest.fixture
def tree_copy(tree, tmp_path):
    copy = tmp_path / "tree"
    shutil.copytree(tree, copy)
    return copy


def quiet(_):
    pass


def corrupt_of(root, split):
    manifest = standin.read_manifest(str(root))
    return sorted(c["path"][len(split) + 1:] for c in manifest["corrupt"] if c["split"] == split)


# ---------------------------------------------------------------- inputs (no Caffe)

def test_resolve_reads_the_standin_tree_like_ilsvrc12(tree):
    sources = imagenet_sources.resolve(str(tree))
    assert sources.classes == (tree / "synsets.txt").read_text().split()
    assert sources.classes_source.endswith("synsets.txt")
    assert sources.words[sources.classes[0]] == standin.class_table(3)[0]["name"]
    assert sources.train.source["kind"] == "tree" and sources.val.source["kind"] == "list"
    manifest = standin.read_manifest(str(tree))
    assert len(sources.train.entries) == manifest["files"]["train"]
    assert len(sources.val.entries) == manifest["files"]["val"]
    for rel, label in sources.train.entries:
        assert rel.split("/")[0] == sources.classes[label]
    val_txt = dict(line.split() for line in (tree / "val.txt").read_text().splitlines())
    assert {rel: str(label) for rel, label in sources.val.entries} == val_txt


def test_list_files_and_a_val_tree_are_accepted(tree_copy):
    # convert_imageset's own lists, paths relative to the split folders
    sources = imagenet_sources.resolve(
        train_dir=str(tree_copy / "train"), val_dir=str(tree_copy / "val"),
        train_list=str(tree_copy / "train.txt"), val_list=str(tree_copy / "val.txt"),
        classes_file=str(tree_copy / "synsets.txt"))
    assert sources.train.source["kind"] == "list"
    assert len(sources.train.entries) == len((tree_copy / "train.txt").read_text().splitlines())
    # a val/<wnid>/ tree instead of val.txt
    classes = (tree_copy / "synsets.txt").read_text().split()
    val_txt = [line.split() for line in (tree_copy / "val.txt").read_text().splitlines()]
    for name, label in val_txt:
        os.makedirs(tree_copy / "val" / classes[int(label)], exist_ok=True)
        os.rename(tree_copy / "val" / name, tree_copy / "val" / classes[int(label)] / name)
    os.remove(tree_copy / "val.txt")
    sources = imagenet_sources.resolve(str(tree_copy))
    assert sources.val.source["kind"] == "tree"
    assert sorted(sources.val.entries) == sorted(
        (classes[int(label)] + "/" + name, int(label)) for name, label in val_txt)


def test_val_labels_may_be_wnids(tree_copy):
    classes = (tree_copy / "synsets.txt").read_text().split()
    lines = [line.split() for line in (tree_copy / "val.txt").read_text().splitlines()]
    (tree_copy / "val.txt").write_text("".join("%s %s\n" % (n, classes[int(lab)]) for n, lab in lines))
    sources = imagenet_sources.resolve(str(tree_copy))
    assert sorted(sources.val.entries) == sorted((n, int(lab)) for n, lab in lines)


def problems_of(**kwargs):
    with pytest.raises(SourceError) as info:
        imagenet_sources.resolve(**kwargs)
    return "\n".join(info.value.problems)


def test_missing_folders_and_label_file_are_named(tree_copy, tmp_path):
    assert "data folder not found: %s" % (tmp_path / "nope") in problems_of(root=str(tmp_path / "nope"))
    shutil.rmtree(tree_copy / "val")
    assert "val folder not found: %s" % (tree_copy / "val") in problems_of(root=str(tree_copy))
    os.mkdir(tree_copy / "val")
    os.remove(tree_copy / "val.txt")
    assert "no label file for the val images" in problems_of(root=str(tree_copy))
    shutil.rmtree(tree_copy / "train")
    assert "train folder not found: %s" % (tree_copy / "train") in problems_of(root=str(tree_copy))
    os.mkdir(tree_copy / "train")
    (tree_copy / "train" / "n01440764.tar").write_bytes(b"")
    assert "no class folders (expected %s/<wnid>/*.JPEG); it holds 1 .tar files: unpack" % (
        tree_copy / "train") in problems_of(root=str(tree_copy))


def test_a_label_file_that_does_not_match_the_tree(tree_copy):
    lines = (tree_copy / "val.txt").read_text().splitlines()
    bad = list(lines)
    bad[0] = "ILSVRC2012_val_00000001.JPEG 2"     # not on disk
    bad[1] = bad[1].split()[0] + " 999"             # out of range for 3 classes
    bad[2] = "a_name_without_a_label.JPEG"
    bad[3] = bad[3].split()[0] + " n12345678"       # a wnid that is not a class
    (tree_copy / "val.txt").write_text("\n".join(bad) + "\n")
    text = problems_of(root=str(tree_copy))
    assert "1 listed file(s) missing under %s: ILSVRC2012_val_00000001.JPEG" % (tree_copy / "val") in text
    assert "val labels out of range: the train data has 3 classes (labels 0..2)" in text and "999" in text
    assert "1 line(s) are not 'relative/path LABEL': line 3 'a_name_without_a_label.JPEG'" in text
    assert "neither integers nor known class names: line 4 'n12345678'" in text


def test_val_labels_covering_fewer_classes_than_train(tree_copy):
    lines = [l for l in (tree_copy / "val.txt").read_text().splitlines() if not l.endswith(" 2")]
    (tree_copy / "val.txt").write_text("\n".join(lines) + "\n")
    text = problems_of(root=str(tree_copy))
    assert "use 2 distinct classes but the train data has 3" in text
    assert "--allow-missing-val-classes" in text
    sources = imagenet_sources.resolve(str(tree_copy), allow_missing_val_classes=True)
    assert any("no val image" in w for w in sources.val.warnings)
    assert any("not in" in w and "left out" in w for w in sources.val.warnings)  # unlisted files


def test_class_list_different_from_the_train_tree(tree_copy):
    with open(tree_copy / "synsets.txt", "a") as handle:
        handle.write("n99999999\n")
    text = problems_of(root=str(tree_copy))
    assert "lists 4 classes but the train tree %s has 3 class folders" % (tree_copy / "train") in text
    assert "n99999999" in text
    os.makedirs(tree_copy / "train" / "n99999999")   # now the folder exists, but it is empty
    assert "1 class folder(s) hold no image files" in problems_of(root=str(tree_copy))
    (tree_copy / "synsets.txt").write_text("n99000000\nn99000001\n")
    assert "not among the 2 classes: n99000002" in problems_of(root=str(tree_copy))


# ---------------------------------------------------------------- conversion (needs Caffe's tools)

@pytest.fixture(scope="module")
def built(tree, tmp_path_factory):
    if not os.access(os.path.join(TOOLS, "convert_imageset"), os.X_OK):
        pytest.skip("convert_imageset not built")
    out = tmp_path_factory.mktemp("out") / "imagenet"
    sources = imagenet_sources.resolve(str(tree))
    manifest, changed = imagenet.prepare(sources, str(out), imagenet.Options(height=SIZE, width=SIZE),
                                         tools_dir=TOOLS, log=quiet)
    assert changed
    return out, manifest


@needs_tools
def test_outputs_counts_labels_and_named_skips(tree, built):
    from gencaffe.data import datum_io
    out, manifest = built
    for name in imagenet.OUTPUTS:
        assert (out / name).exists(), name
    assert [n for n in os.listdir(out) if n.startswith(".")] == []
    assert (out / "classes.txt").read_text().split() == (tree / "synsets.txt").read_text().split()
    for split in ("train", "val"):
        named = sorted(s["path"] for s in manifest["skipped"] if s["split"] == split)
        assert named == corrupt_of(tree, split)
    assert len((out / "skipped.txt").read_text().splitlines()) == 1 + 4
    for split, clean in (("train", 15), ("val", 6)):
        assert manifest["counts"][split] == {"listed": clean + 2, "written": clean, "skipped": 2}
        listed = [line.rsplit(" ", 1) for line in (out / (split + "_list.txt")).read_text().splitlines()]
        datums = list(datum_io.iter_datums(str(out / (split + "_lmdb"))))
        assert len(datums) == clean == len(listed)
        truth = dict(getattr(imagenet_sources.resolve(str(tree)), split).entries)
        for (key, datum), (rel, label) in zip(datums, listed):
            assert key.split("_", 1)[1] == rel               # Caffe's key: %08d_<path>
            assert datum.label == int(label) == truth[rel]
            assert (datum.channels, datum.height, datum.width) == (3, SIZE, SIZE)
            assert not datum.encoded
        assert [rel for rel, _ in listed] != sorted(rel for rel, _ in listed)  # shuffled
    # the mean equals the average of the train Datums, computed here independently
    pixels = np.stack([datum_io.datum_to_array(d).astype(np.float64)
                       for _, d in datum_io.iter_datums(str(out / "train_lmdb"))])
    mean = datum_io.read_mean(str(out / "mean.binaryproto"))
    assert mean.shape == (3, SIZE, SIZE)
    np.testing.assert_allclose(mean, pixels.mean(axis=0), atol=1e-3)
    assert manifest["mean"]["channel_means_bgr"] == pytest.approx(pixels.mean(axis=(0, 2, 3)), abs=1e-3)


@needs_tools
def test_second_run_is_a_no_op_and_a_changed_input_rebuilds(tree, built, tmp_path):
    out, manifest = built
    before = {n: os.stat(out / n).st_mtime_ns for n in ("manifest.json", "train_lmdb")}
    again, changed = imagenet.prepare(imagenet_sources.resolve(str(tree)), str(out),
                                      imagenet.Options(height=SIZE, width=SIZE), tools_dir=TOOLS,
                                      log=quiet)
    assert not changed and again == manifest
    assert {n: os.stat(out / n).st_mtime_ns for n in before} == before
    # a copy whose one image was rewritten: another fingerprint, so a rebuild
    copy = tmp_path / "tree"
    shutil.copytree(tree, copy)
    out2 = tmp_path / "out"
    imagenet.prepare(imagenet_sources.resolve(str(copy)), str(out2),
                     imagenet.Options(height=SIZE, width=SIZE), tools_dir=TOOLS, log=quiet)
    victim = copy / "train" / "n99000000" / "n99000000_1.JPEG"
    victim.write_bytes(b"")
    _, changed = imagenet.prepare(imagenet_sources.resolve(str(copy)), str(out2),
                                  imagenet.Options(height=SIZE, width=SIZE), tools_dir=TOOLS,
                                  log=quiet)
    assert changed
    fresh = json.loads((out2 / "manifest.json").read_text())
    assert {"split": "train", "path": "n99000000/n99000000_1.JPEG",
            "reason": "zero-byte file"} in fresh["skipped"]


@needs_tools
def test_a_run_killed_while_moving_outputs_into_place_is_redone(tree, built, tmp_path, monkeypatch):
    out, manifest = built
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    real_rename, moved = os.rename, []

    def dying_rename(src, dst):
        if str(dst) == str(copy / "val_lmdb") and ".staging-" in str(src):
            raise KeyboardInterrupt  # killed after train_lmdb was replaced
        moved.append(dst)
        return real_rename(src, dst)

    monkeypatch.setattr(imagenet.os, "rename", dying_rename)
    sources = imagenet_sources.resolve(str(tree))
    options = imagenet.Options(height=SIZE, width=SIZE, seed=2)   # another shuffle
    with pytest.raises(KeyboardInterrupt):
        imagenet.prepare(sources, str(copy), options, tools_dir=TOOLS, log=quiet)
    monkeypatch.setattr(imagenet.os, "rename", real_rename)
    assert json.loads((copy / "manifest.json").read_text())["fingerprint"] is None
    # still ours, not current: the next run rebuilds it instead of refusing or skipping
    again, changed = imagenet.prepare(sources, str(copy), options, tools_dir=TOOLS, log=quiet)
    assert changed and again["counts"] == manifest["counts"]
    assert [n for n in os.listdir(copy) if n.startswith(".")] == []


@needs_tools
def test_encoded_datums(tree, tmp_path):
    from gencaffe.data import datum_io
    out = tmp_path / "enc"
    manifest, _ = imagenet.prepare(imagenet_sources.resolve(str(tree)), str(out),
                                   imagenet.Options(height=SIZE, width=SIZE, encoded=True),
                                   tools_dir=TOOLS, log=quiet)
    key, datum = next(datum_io.iter_datums(str(out / "val_lmdb")))
    assert datum.encoded and datum.data[:2] == b"\xff\xd8"  # JPEG
    assert datum_io.datum_to_array(datum).shape == (3, SIZE, SIZE)
    assert datum_io.read_mean(str(out / "mean.binaryproto")).shape == (3, SIZE, SIZE)
    assert manifest["counts"]["val"]["written"] == 6


@needs_tools
def test_without_the_check_caffe_keeps_truncated_jpegs_and_we_say_so(tree, tmp_path):
    out = tmp_path / "nocheck"
    manifest, _ = imagenet.prepare(imagenet_sources.resolve(str(tree)), str(out),
                                   imagenet.Options(height=SIZE, width=SIZE, check=False),
                                   tools_dir=TOOLS, log=quiet)
    # OpenCV cannot open the zero-byte and text files: convert_imageset skips them, we name them
    by_caffe = sorted((s["split"], s["path"]) for s in manifest["skipped"])
    corrupt = standin.read_manifest(str(tree))["corrupt"]
    unopenable = sorted((c["split"], c["path"].split("/", 1)[1]) for c in corrupt
                        if c["kind"] != "truncated")
    assert by_caffe == unopenable
    # the truncated JPEGs went in (that is what the decode check is for), with a warning
    assert manifest["counts"]["train"]["written"] == 15 + 1
    assert any("Premature end of JPEG file" in w and "IN the LMDBs" in w
               for w in manifest["warnings"])


@needs_tools
def test_an_output_folder_that_is_not_ours_is_refused(tree, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "train_lmdb").mkdir()
    with pytest.raises(imagenet.DataError, match="was not written by this tool"):
        imagenet.prepare(imagenet_sources.resolve(str(tree)), str(out), tools_dir=TOOLS, log=quiet)
    assert os.listdir(out) == ["train_lmdb"]
    (tmp_path / "afile").write_text("x")
    with pytest.raises(imagenet.DataError, match="is not a folder"):
        imagenet.prepare(imagenet_sources.resolve(str(tree)), str(tmp_path / "afile"),
                         tools_dir=TOOLS, log=quiet)


def fake_tools(folder, convert_body, mean_body=None):
    """A tools folder whose convert_imageset/compute_image_mean are shell scripts."""
    folder.mkdir()
    real_mean = os.path.join(TOOLS, "compute_image_mean")
    for name, body in (("convert_imageset", convert_body),
                       ("compute_image_mean", mean_body or 'exec %s "$@"' % real_mean)):
        path = folder / name
        path.write_text("#!/bin/sh\n" + body + "\n")
        path.chmod(0o755)
    return str(folder)


@needs_tools
def test_a_failing_convert_imageset_leaves_nothing_half_written(tree, built, tmp_path):
    # it makes the DB folder, writes part of it, then dies: as a crash mid-way would
    tools = fake_tools(tmp_path / "tools", 'for last; do :; done; mkdir -p "$last"; '
                       'echo partial > "$last/data.mdb"; echo "F0101 boom: disk full" >&2; exit 3')
    sources = imagenet_sources.resolve(str(tree))
    fresh = tmp_path / "fresh"
    with pytest.raises(imagenet.DataError, match=r"(?s)writing the train LMDB: convert_imageset failed \(exit code 3\).*disk full"):
        imagenet.prepare(sources, str(fresh), imagenet.Options(height=SIZE, width=SIZE),
                         tools_dir=tools, log=quiet)
    assert not fresh.exists()
    # an earlier good output stays exactly as it was
    out, manifest = built
    kept = tmp_path / "kept"
    shutil.copytree(out, kept)
    before = sorted(os.listdir(kept))
    with pytest.raises(imagenet.DataError):
        imagenet.prepare(sources, str(kept), imagenet.Options(height=SIZE + 8, width=SIZE + 8),
                         tools_dir=tools, log=quiet)
    assert sorted(os.listdir(kept)) == before
    assert json.loads((kept / "manifest.json").read_text()) == manifest


@needs_tools
def test_a_killed_compute_image_mean_leaves_nothing(tree, tmp_path):
    real_convert = os.path.join(TOOLS, "convert_imageset")
    tools = fake_tools(tmp_path / "tools", 'exec %s "$@"' % real_convert,
                       mean_body='kill -9 $$')
    out = tmp_path / "out"
    with pytest.raises(imagenet.DataError, match="compute_image_mean failed \\(killed by SIGKILL\\)"):
        imagenet.prepare(imagenet_sources.resolve(str(tree)), str(out),
                         imagenet.Options(height=SIZE, width=SIZE), tools_dir=tools, log=quiet)
    assert not out.exists()


@needs_tools
def test_cli_summary_and_messages(tree, tmp_path):
    script = os.path.join(REPO, "tools", "make_imagenet_lmdb.py")
    env = dict(os.environ, CAFFE_BUILD_DIR=BUILD)
    run = subprocess.run([sys.executable, script, str(tree), "--out-dir", str(tmp_path / "o"),
                          "--size", str(SIZE), "--no-progress", "--jobs", "1"],
                         capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr
    for split in ("train", "val"):
        for rel in corrupt_of(tree, split):
            assert rel in run.stdout
    assert "train: 15 written, 2 skipped (of 17 listed)" in run.stdout
    run = subprocess.run([sys.executable, script, str(tmp_path / "missing"), "--out-dir",
                          str(tmp_path / "o2")], capture_output=True, text=True, timeout=60, env=env)
    assert run.returncode == 1
    assert "data folder not found: %s" % (tmp_path / "missing") in run.stderr
    assert not (tmp_path / "o2").exists()
