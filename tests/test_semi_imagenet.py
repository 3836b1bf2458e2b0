"""The semi-supervised ImageNet pipeline on a tiny stand-in (the smoke runner's
data step): the split tool on a convert_imageset LMDB, and the committed AlexNet
solvers for it run with the real caffe for a few iterations each, overridden
only where a run must be (net, max_iter, test passes, display, snapshot,
seed, CPU): semi-supervised GG on mixed batches, DG tuning from its weights
with -weights, DG on the labelled subset alone. Plus the committed solvers'
epoch arithmetic."""
import math
import os
import re
import subprocess
from dataclasses import replace

import pytest

pytest.importorskip("caffe", reason="pycaffe not built")
pytest.importorskip("lmdb")

from conftest import BUILD, REPO  # noqa: E402
from gencaffe import caffe_log, solver_config  # noqa: E402
from gencaffe.data import splits, standin  # noqa: E402
from gencaffe.experiments import imagenet_data  # noqa: E402
from gencaffe.experiments import imagenet_smoke as smoke  # noqa: E402
from gencaffe.nets import catalog, semi, variants  # noqa: E402

CAFFE = os.path.join(BUILD, "caffe", "tools", "caffe")
TINY = dict(classes=4, train_per_class=6, val_per_class=2, corrupt=0)
PAPER_LABELS = {"50k": 50000, "100k": 100000, "300k": 300000}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("semi_imagenet")
    settings = smoke.Settings(repo=REPO, caffe=CAFFE, lmdb_dir=str(folder / "lmdb"),
                              standin_dir=str(folder / "standin"),
                              standin=standin.StandinConfig(**TINY), log=lambda m: None)
    info = imagenet_data.prepare_data(settings)
    assert (info.classes, info.train_count, info.val_count) == (4, 24, 8)
    return folder, info


def train(folder, name, template, net_text, iterations, info, weights=None):
    run_dir = folder / name
    run_dir.mkdir()
    (run_dir / "train_val.prototxt").write_text(net_text)
    test_iter, interval = smoke.test_plan(smoke.Settings(repo=REPO, caffe=CAFFE, test_batch=8),
                                          info, iterations)
    solver = solver_config.with_overrides(
        solver_config.load_solver(os.path.join(REPO, template)),
        net=str(run_dir / "train_val.prototxt"), max_iter=iterations, test_iter=[test_iter],
        test_interval=interval, display=1, snapshot=0, snapshot_prefix=str(run_dir / "alexnet"),
        random_seed=1, solver_mode="CPU")
    (run_dir / "solver.prototxt").write_text(solver_config.solver_text(solver))
    command = [CAFFE, "train", "-solver", str(run_dir / "solver.prototxt")]
    if weights:
        command += ["-weights", weights]
    env = dict(os.environ, GLOG_logtostderr="1", GLOG_minloglevel="0", OMP_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1")
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    parsed = caffe_log.parse_lines(result.stderr.splitlines())
    assert parsed.finished and parsed.train_displays
    assert all(math.isfinite(d.smoothed_loss) for d in parsed.train_displays)
    snapshot = str(run_dir / ("alexnet_iter_%d.caffemodel" % iterations))
    assert os.path.exists(snapshot)
    return result.stderr, snapshot


def test_split_and_the_alexnet_semi_supervised_solvers_run(data, tmp_path):
    folder, info = data
    split = str(tmp_path / "split")
    manifest = splits.make_split(info.path("train_lmdb"), split,
                                 splits.SplitRequest(labelled=8, seed=1), log=lambda m: None)
    assert manifest["counts"] == {"labelled": 8, "unlabelled": 16}
    assert manifest["classes"] == 4 and len(manifest["class_prior"]) == 4
    arch = catalog.architecture("alexnet")
    base = replace(arch.semi_data, test_source=info.path("val_lmdb"),
                   mean_file=info.path("mean.binaryproto"), train_batch=4, test_batch=8)

    def net(variant):
        options = semi.split_options(arch, split, manifest, data=base, num_classes=4,
                                     uniform_prior=variant == "semi_dg")
        return variants.prototxt(arch, variant, options, generated_by="test")

    semi_net = net("semi_gg")
    assert "batch_size: 1\n" in semi_net and "batch_size: 3\n" in semi_net   # 1 + 3 of 4
    assert semi_net.count("class_prior:") == 4
    log, stage1 = train(tmp_path, "semi_gg", "solvers/alexnet_semi_gg.prototxt", semi_net, 3,
                        info)
    assert re.search(r"Train net output #\d+: ess = ", log)
    gg_final = caffe_log.parse_lines(log.splitlines()).final_test()
    assert gg_final.iteration == 3
    log, _ = train(tmp_path, "tune", "solvers/alexnet_semi_dg_tune_50k.prototxt",
                   net("semi_dg"), 2, info, weights=stage1)
    assert "Finetuning from %s" % stage1 in log
    # started from the GG weights: its first test pass scores the val set as GG's last
    first = caffe_log.parse_lines(log.splitlines()).tests()[0]
    assert first.iteration == 0 and first.outputs["accuracy"] == gg_final.outputs["accuracy"]
    assert re.search(r"Iteration 0, lr = 0\.003\b", log)  # the tuning stage's base_lr
    log, _ = train(tmp_path, "dg", "solvers/alexnet_semi_dg_50k.prototxt", net("semi_dg"), 2,
                   info)
    assert re.search(r"Iteration 0, lr = 0\.01\b", log)


@pytest.mark.parametrize("size", sorted(PAPER_LABELS))
def test_committed_alexnet_semi_solvers_count_epochs_of_the_data_each_stage_reads(size):
    labels = PAPER_LABELS[size]
    per_epoch = int(math.ceil(labels / 256.0))
    tune = solver_config.load_solver(os.path.join(REPO, "solvers",
                                                  "alexnet_semi_dg_tune_%s.prototxt" % size))
    alone = solver_config.load_solver(os.path.join(REPO, "solvers",
                                                   "alexnet_semi_dg_%s.prototxt" % size))
    assert (tune.max_iter, tune.stepsize, tune.base_lr) == (25 * per_epoch, 20 * per_epoch,
                                                            pytest.approx(0.003))
    assert (alone.max_iter, alone.stepsize, alone.base_lr) == (70 * per_epoch, 20 * per_epoch,
                                                               pytest.approx(0.01))
    for solver in (tune, alone):
        assert solver.net == "models/alexnet/train_val_semi_dg.prototxt"
        assert (solver.test_interval, solver.test_iter[0]) == (5 * per_epoch, 1000)
        assert (solver.momentum, solver.weight_decay) == (pytest.approx(0.9),
                                                          pytest.approx(0.0005))
    stage1 = solver_config.load_solver(os.path.join(REPO, "solvers",
                                                    "alexnet_semi_gg.prototxt"))
    assert stage1.net == "models/alexnet/train_val_semi_gg.prototxt"
    assert stage1.max_iter == 45 * int(math.ceil(1281167 / 256.0))
