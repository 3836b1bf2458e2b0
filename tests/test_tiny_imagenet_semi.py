"""tools/reproduce_tiny_imagenet_semi.py (gencaffe.experiments.tiny_imagenet_semi
and its report) with the real caffe on a generated Tiny-ImageNet-layout tree:
the paper's labelled shares, the schedule, the mixed batches' labelled share,
the splits, and the DG tuning starting from the semi-supervised GG run."""
import dataclasses
import json
import os
import subprocess
import sys

import pytest

import tiny_tree
from conftest import BUILD

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(REPO, "tools", "reproduce_tiny_imagenet_semi.py")
TOOLS = os.path.join(BUILD, "caffe", "tools")
CAFFE = os.path.join(TOOLS, "caffe")
needs_caffe = pytest.mark.skipif(
    not all(os.access(os.path.join(TOOLS, t), os.X_OK)
            for t in ("caffe", "convert_imageset", "compute_image_mean")),
    reason="needs the CPU build (caffe, convert_imageset, compute_image_mean)")


def test_labelled_counts_are_table_3s_shares():
    from gencaffe.experiments import tiny_imagenet_semi as semi
    assert [semi.labelled_count(f, 60000) for f in ("50k", "100k", "300k")] == \
        [2342, 4683, 14050]
    assert semi.labelled_count("300k", 100000) == 23416      # the full Tiny ImageNet
    with pytest.raises(semi.tiny.TinyError, match="unknown fraction"):
        semi.labelled_count("1k", 60000)


def test_schedule_gives_both_approaches_the_same_budget():
    from gencaffe.experiments import tiny_imagenet_semi as semi
    from gencaffe.experiments.imagenet_data import DataInfo
    settings = semi.Settings(repo=REPO, caffe=CAFFE)
    sched = semi.schedule(settings, DataInfo("d", 200, 60000, 10000, "f"), 250)
    assert (sched.epochs, sched.switch, sched.iters_per_epoch, sched.stepsize) == \
        (9, 6, 240, 4800)
    sched = semi.schedule(dataclasses.replace(settings, epochs=3),
                          DataInfo("d", 200, 60000, 10000, "f"), 250)
    assert (sched.epochs, sched.switch) == (3, 2)


def test_uniform_prior_option_drops_rho_from_the_semi_gg_net_and_the_report_says_so():
    pytest.importorskip("caffe.proto.caffe_pb2", reason="the nets are written with caffe_pb2")
    from gencaffe.experiments import tiny_imagenet_semi as semi
    from gencaffe.experiments import tiny_imagenet_semi_report as report
    from gencaffe.experiments.imagenet_data import DataInfo
    data = DataInfo("d", 3, 120, 6, "f")
    manifest = {"counts": {"labelled": 28, "unlabelled": 92}, "pool": 120,
                "class_prior": [0.5, 0.25, 0.25]}
    paper = semi.Settings(repo=REPO, caffe=CAFFE)
    net = semi.net_text(paper, data, "semi_gg", "300k", 1, manifest)
    assert net.count("class_prior: ") == 3 and "class_prior: 0.5" in net
    uniform = dataclasses.replace(paper, uniform_prior=True)
    assert "class_prior" not in semi.net_text(uniform, data, "semi_gg", "300k", 1, manifest)
    assert report.eq19_settings_text(paper) == (
        "lambda 0.1", "rho = the labelled class frequencies",
        "each batch holding the subset's share of labelled images")
    assert report.eq19_settings_text(uniform)[1] == (
        "rho uniform (option; the paper: the class frequencies, here the labelled subset's)")
    assert report.eq19_settings_text(dataclasses.replace(paper, unlabeled_weight=0.02))[0] == \
        "lambda 0.02 (option; the paper: 0.1)"
    # 0 is a lambda like any other (the unlabelled images stay importance samples), not "default"
    no_lambda = dataclasses.replace(paper, unlabeled_weight=0.0)
    assert "unlabeled_weight: 0\n" in semi.net_text(no_lambda, data, "semi_gg", "300k", 1, manifest)
    assert report.eq19_settings_text(no_lambda)[0] == "lambda 0 (option; the paper: 0.1)"
    assert "unlabeled_weight" not in net or "unlabeled_weight: 0.1\n" in net
    with pytest.raises(semi.tiny.TinyError, match="labelled share"):
        semi.net_text(dataclasses.replace(paper, labelled_share=0.0), data, "semi_gg", "300k", 1,
                      manifest)


@needs_caffe
def test_runs_splits_mixed_batches_and_tuning(tmp_path):
    tiny_tree.make(tmp_path / "tree", classes=3, train_per_class=40, val_per_class=2)
    subprocess.run([sys.executable, os.path.join(REPO, "tools", "make_imagenet_lmdb.py"),
                    str(tmp_path / "tree"), "--out-dir", str(tmp_path / "lmdb"), "--no-progress",
                    "--jobs", "1", "--caffe-tools", TOOLS], check=True, capture_output=True)
    runs = tmp_path / "runs"
    result = subprocess.run(
        [sys.executable, TOOL, "--lmdb-dir", str(tmp_path / "lmdb"), "--splits-dir",
         str(tmp_path / "splits"), "--runs-dir", str(runs), "--results-dir",
         str(tmp_path / "results"), "--caffe", CAFFE, "--seeds", "1", "--fractions", "300k",
         "--epochs", "3", "--batch", "20", "--progress-every", "600"],
        capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    # each run's epochs counted against its own last epoch: semi GG stops at the switch
    assert "semi-supervised GG alone seed 1 epoch 2/2] start" in result.stdout
    assert "semi-supervised GG + DG tuning seed 1 epoch 3/3] start" in result.stdout
    assert "DG, labelled subset only seed 1 epoch 3/3] start" in result.stdout
    split = json.loads((tmp_path / "splits" / "300k_seed1" / "split.json").read_text())
    assert split["counts"] == {"labelled": 28, "unlabelled": 92}    # 23.4 % of 120
    assert not split["request"]["balanced"]                         # the paper's random subset
    seed = runs / "300k" / "seed1"
    net = (seed / "semi_gg" / "epoch1" / "train_val.prototxt").read_text()
    # the subset's share of each batch of 20: 28/120 -> 5 labelled, 15 unlabelled
    assert "batch_size: 5" in net and "batch_size: 15" in net
    assert "labelled_lmdb" in net and "unlabelled_lmdb" in net and "class_prior" in net
    # semi GG's snapshots of every epoch are kept (diagnostics); stage 2 starts from its last
    assert all((seed / "semi_gg" / ("epoch%d" % e) / ("alexnet_iter_%d.caffemodel" % (6 * e)))
               .exists() for e in (1, 2))
    first = (seed / "semi_gg_dg" / "epoch3" / "train.log").read_text().splitlines()[0]
    assert "-weights %s" % (seed / "semi_gg" / "epoch2" / "alexnet_iter_12.caffemodel") in first
    tuning = (seed / "semi_gg_dg" / "epoch3" / "train_val.prototxt").read_text()
    assert "unlabelled_lmdb" not in tuning and "GenerativeLoss" not in tuning
    for approach in ("dg", "semi_gg", "semi_gg_dg"):
        assert json.loads((seed / approach / "eval.5crop.json").read_text())["crops"] == 5
    report = (tmp_path / "results" / "tiny_imagenet_semi.md").read_text()
    assert "| 300k (28) | semi-supervised GG + DG tuning |" in report
    assert "| 300k | " in report and "(no paired seeds yet)" not in report
    # the unlabelled term over semi GG's two epochs, checked against Caffe's
    # own loss layer on each snapshot's first batch, and the Bayes-rule reading
    diagnostics = json.loads((seed / "semi_gg" / "diagnostics.json").read_text())
    assert [row["iteration"] for row in diagnostics["snapshots"]] == [6, 12]
    assert diagnostics["batches"] == 6                   # 92 unlabelled // 15 per batch
    assert diagnostics["final"]["test_images"] == 6 and diagnostics["final"]["iteration"] == 12
    for row in diagnostics["snapshots"]:
        assert 0 <= row["pseudo_accuracy"] <= 1 and 0 < row["ess"] <= 1
        assert abs(sum(row["class_share"]) - 1) < 1e-9 and len(row["class_share"]) == 3
    assert "| 300k | 1 | " in report and "| 300k | 2 | " in report
    assert "| labelled | argmax f_y | Bayes rule with Z_y |" in report
    assert "s1 %.2f / %.2f" % (100 * (1 - diagnostics["final"]["classifier_test_accuracy"]),
                               100 * (1 - diagnostics["final"]["generative_test_accuracy"])) \
        in report
