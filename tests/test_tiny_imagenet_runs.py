"""tools/reproduce_tiny_imagenet.py (gencaffe.experiments.tiny_imagenet and its
report) with the real caffe on a generated Tiny-ImageNet-layout tree: the
schedule, the solvers' overrides, the reuse of the GG / DG runs' switch-epoch
snapshots, and that a stopped run resumes to the very weights of one that
never stopped."""
import dataclasses
import json
import os
import subprocess
import sys

import pytest

import tiny_tree
from conftest import BUILD

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(REPO, "tools", "reproduce_tiny_imagenet.py")
CAFFE = os.path.join(BUILD, "caffe", "tools", "caffe")
TOOLS = os.path.join(BUILD, "caffe", "tools")
needs_caffe = pytest.mark.skipif(
    not all(os.access(os.path.join(TOOLS, t), os.X_OK)
            for t in ("caffe", "convert_imageset", "compute_image_mean")),
    reason="needs the CPU build (caffe, convert_imageset, compute_image_mean)")
SMALL = ["--epochs", "3", "--batch", "4", "--seeds", "1", "--archs", "alexnet",
         "--progress-every", "600"]


@pytest.fixture(scope="module")
def lmdb(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    tiny_tree.make(root / "tree", classes=3, train_per_class=4, val_per_class=2)
    subprocess.run([sys.executable, os.path.join(REPO, "tools", "make_imagenet_lmdb.py"),
                    str(root / "tree"), "--out-dir", str(root / "lmdb"), "--no-progress",
                    "--jobs", "1", "--caffe-tools", TOOLS], check=True, capture_output=True)
    return root / "lmdb"


def run(lmdb, runs, *args):
    return subprocess.run([sys.executable, TOOL, "--lmdb-dir", str(lmdb), "--runs-dir",
                           str(runs), "--results-dir", str(runs / "results"), "--caffe", CAFFE,
                           *SMALL, *args], capture_output=True, text=True, cwd=REPO)


def sha(path):
    import hashlib
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def settings_for(lmdb, runs, **changes):
    from gencaffe.experiments import tiny_imagenet as tiny
    settings = tiny.Settings(repo=REPO, caffe=CAFFE, runs_dir=str(runs), lmdb_dir=str(lmdb),
                             archs=["alexnet"], seeds={"alexnet": [1]}, epochs=3,
                             train_batch=4, log=lambda _: None)
    return dataclasses.replace(settings, **changes)


def test_schedule_of_the_committed_solvers():
    """9 epochs of 240 iterations, switch after 6, lr step every 20 epochs (4,800
    iterations, Caffe's ImageNet example's), not scaled with the run;
    --epochs scales the switch; a batch that does not divide the train set is
    said so."""
    from gencaffe.experiments import tiny_imagenet as tiny
    from gencaffe.experiments.imagenet_data import DataInfo
    data = DataInfo("d", 200, 60000, 10000, "f")
    settings = tiny.Settings(repo=REPO, caffe=CAFFE)
    sched = tiny.schedule(settings, "alexnet", data, 250)
    assert (sched.epochs, sched.switch, sched.iters_per_epoch, sched.stepsize,
            sched.exact_epochs) == (9, 6, 240, 4800, True)
    sched = tiny.schedule(dataclasses.replace(settings, epochs=18), "zf", data, 250)
    assert (sched.epochs, sched.switch, sched.stepsize) == (18, 12, 4800)
    full = DataInfo("d", 200, 100000, 10000, "f")     # the full 500-per-class set
    sched = tiny.schedule(settings, "alexnet", full, 250)
    assert (sched.iters_per_epoch, sched.stepsize) == (400, 8000)
    assert not tiny.schedule(settings, "alexnet", data, 256).exact_epochs


def test_gg_and_stage1_solvers_must_share_their_schedule(tmp_path):
    from gencaffe.experiments import tiny_imagenet as tiny
    from gencaffe.experiments.imagenet_data import DataInfo
    os.makedirs(tmp_path / "solvers")
    for stage in ("dg", "gg", "gg_dg_stage1", "gg_dg_stage2"):
        path = os.path.join(REPO, tiny.solver_template("alexnet", stage))
        text = open(path).read()
        if stage == "gg_dg_stage1":
            text = text.replace("momentum: 0.9", "momentum: 0.8")
        (tmp_path / tiny.solver_template("alexnet", stage)).write_text(text)
    settings = tiny.Settings(repo=str(tmp_path), caffe=CAFFE)
    with pytest.raises(tiny.TinyError, match="differ in momentum"):
        tiny.schedule(settings, "alexnet", DataInfo("d", 200, 60000, 10000, "f"), 250)


@needs_caffe
def test_missing_data_is_named(tmp_path):
    result = run(tmp_path / "nothing", tmp_path / "runs")
    assert result.returncode == 2
    assert str(tmp_path / "nothing") in result.stdout and "make_imagenet_lmdb.py" in result.stdout


@needs_caffe
def test_a_stopped_run_resumes_to_the_weights_of_an_unstopped_one(lmdb, tmp_path):
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    assert run(lmdb, whole, "--approaches", "dg").returncode == 0
    first = run(lmdb, stopped, "--approaches", "dg", "--max-epochs", "1")
    assert first.returncode == 0, first.stdout
    assert "stopped after 1 epoch(s) as asked" in first.stdout
    epochs = stopped / "alexnet" / "dg" / "seed1"
    assert (epochs / "epoch1" / "done.json").exists() and not (epochs / "epoch2").exists()
    second = run(lmdb, stopped, "--approaches", "dg")
    assert second.returncode == 0, second.stdout
    assert "-snapshot %s" % os.path.join(str(epochs), "epoch1", "alexnet_iter_3.solverstate") \
        in second.stdout
    final = os.path.join("alexnet", "dg", "seed1", "epoch3", "alexnet_iter_9.caffemodel")
    assert sha(whole / final) == sha(stopped / final)
    # only what a later run reads is kept: the final and the switch epoch's weights
    assert not (epochs / "epoch1" / "alexnet_iter_3.caffemodel").exists()
    assert (epochs / "epoch2" / "alexnet_iter_6.caffemodel").exists()
    assert not (epochs / "epoch2" / "alexnet_iter_6.solverstate").exists()
    # an epoch lost after its successors were done is retrained from the start, to
    # the same snapshot, and the later epochs stay valid (once the run is out of
    # the ledger, which would otherwise hold it as finished)
    (epochs / "epoch2" / "done.json").unlink()
    (stopped / "results" / "tiny_imagenet_runs" / "alexnet-dg-seed1.json").unlink()
    third = run(lmdb, stopped, "--approaches", "dg")
    assert third.returncode == 0, third.stdout
    assert "epoch 1/3] start" in third.stdout and "epoch 3/3] start" not in third.stdout
    assert sha(whole / final) == sha(stopped / final)


@needs_caffe
def test_keep_every_snapshot_keeps_each_epochs_weights_and_changes_nothing_else(lmdb, tmp_path):
    plain, kept = tmp_path / "plain", tmp_path / "kept"
    assert run(lmdb, plain, "--approaches", "dg").returncode == 0
    result = run(lmdb, kept, "--approaches", "dg", "--keep-every-snapshot")
    assert result.returncode == 0, result.stdout
    epochs = kept / "alexnet" / "dg" / "seed1"
    for epoch in (1, 2, 3):
        assert (epochs / ("epoch%d" % epoch) / ("alexnet_iter_%d.caffemodel" % (3 * epoch))).exists()
    assert not (epochs / "epoch1" / "alexnet_iter_3.solverstate").exists()   # states still go
    assert not (plain / "alexnet" / "dg" / "seed1" / "epoch1" / "alexnet_iter_3.caffemodel").exists()
    final = os.path.join("alexnet", "dg", "seed1", "epoch3", "alexnet_iter_9.caffemodel")
    assert sha(plain / final) == sha(kept / final)


@needs_caffe
def test_gg_dg_and_control_start_from_the_gg_and_dg_runs(lmdb, tmp_path):
    runs = tmp_path / "runs"
    result = run(lmdb, runs)
    assert result.returncode == 0, result.stdout + result.stderr
    seed = runs / "alexnet"
    for approach, source in (("gg_dg", "gg"), ("control", "dg")):
        assert sorted(os.listdir(seed / approach / "seed1")) == [
            "deploy.prototxt", "epoch3", "eval.5crop.json", "eval.5crop.md", "eval.log"]
        log = (seed / approach / "seed1" / "epoch3" / "train.log").read_text()
        weights = os.path.join(str(seed), source, "seed1", "epoch2", "alexnet_iter_6.caffemodel")
        assert "-weights %s" % weights in log.splitlines()[0]
    # the stage-2 solver is the committed one with only the runner's overrides
    from gencaffe import solver_config
    from gencaffe.experiments import tiny_imagenet as tiny
    committed = solver_config.load_solver(os.path.join(
        REPO, tiny.solver_template("alexnet", "gg_dg_stage2")))
    ours = solver_config.load_solver(str(seed / "gg_dg" / "seed1" / "epoch3" / "solver.prototxt"))
    assert tiny.same_schedule(committed, ours) == sorted(
        ["display", "random_seed", "snapshot", "solver_mode", "stepsize", "test_initialization",
         "test_interval", "test_iter"])
    assert (ours.base_lr, ours.max_iter, ours.random_seed, ours.test_interval) == \
        (committed.base_lr, 3, 1000 + tiny.STAGE2_OFFSET, 3)
    report = (runs / "results" / "tiny_imagenet.md").read_text()
    assert "| AlexNet | GG+DG |" in report and "| AlexNet | GG+DG - DG restarted (control) |" \
        in report
    evaluation = json.loads((seed / "gg_dg" / "seed1" / "eval.5crop.json").read_text())
    assert evaluation["crops"] == 5 and evaluation["n_images"] == 6
    assert (runs / "results" / "tiny_imagenet.png").stat().st_size > 0
    again = run(lmdb, runs)
    assert again.returncode == 0 and "start:" not in again.stdout      # nothing to redo


@needs_caffe
def test_the_ledger_keeps_finished_runs_when_their_folders_are_gone(lmdb, tmp_path):
    """A finished run is written to the ledger beside the report; with its
    folder gone the report still shows it and nothing is trained again; a
    pending GG+DG whose GG run the ledger holds retrains GG only up to the
    switch, and comes out the same; a changed solver makes the entries stale."""
    import shutil
    runs = tmp_path / "runs"
    first = run(lmdb, runs, "--approaches", "gg,gg_dg")
    assert first.returncode == 0, first.stdout + first.stderr
    ledger = runs / "results" / "tiny_imagenet_runs"
    assert sorted(os.listdir(ledger)) == ["alexnet-gg-seed1.json", "alexnet-gg_dg-seed1.json"]
    entries = {name: json.loads((ledger / name).read_text()) for name in os.listdir(ledger)}
    top1 = entries["alexnet-gg_dg-seed1.json"]["result"]["top1_error"]
    report_before = (runs / "results" / "tiny_imagenet.md").read_text()
    assert "Read from the ledger" not in report_before

    shutil.rmtree(runs / "alexnet")
    again = run(lmdb, runs, "--approaches", "gg,gg_dg")
    assert again.returncode == 0, again.stdout
    assert "start:" not in again.stdout and "finished in the ledger" in again.stdout
    report = (runs / "results" / "tiny_imagenet.md").read_text()
    assert "Read from the ledger" in report and "alexnet-gg_dg-seed1" in report
    row = [line for line in report.splitlines() if line.startswith("| AlexNet | GG+DG |")]
    assert row and "s1 %.2f" % top1 in row[0]

    (ledger / "alexnet-gg_dg-seed1.json").unlink()
    redo = run(lmdb, runs, "--approaches", "gg,gg_dg")
    assert redo.returncode == 0, redo.stdout
    assert "GG seed 1 epoch 2/3] start" in redo.stdout            # GG up to the switch
    assert "GG seed 1 epoch 3/3] start" not in redo.stdout.replace("GG+DG seed", "")
    assert "GG+DG seed 1 epoch 3/3] start" in redo.stdout
    assert "differs" not in redo.stdout
    assert json.loads((ledger / "alexnet-gg_dg-seed1.json").read_text())["result"][
        "top1_error"] == top1

    # another solver: every entry is stale, and the runs train again
    (runs / "results" / "tiny_imagenet_runs" / "alexnet-gg-seed1.json").write_text(json.dumps(
        dict(entries["alexnet-gg-seed1.json"], plan_sha256="0" * 64)))
    shutil.rmtree(runs / "alexnet")
    stale = run(lmdb, runs, "--approaches", "gg", "--max-epochs", "1")
    assert stale.returncode == 0 and "GG seed 1 epoch 1/3] start" in stale.stdout
