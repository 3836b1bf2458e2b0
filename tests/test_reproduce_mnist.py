"""The MNIST reproduction driver (gencaffe.experiments.mnist_runs / mnist_report) with a
fake caffe binary (tests/fixtures/fake_caffe.py): per-run solver copies,
resumability, the ESS-based switch and the table, without real training.

The sandbox's data are tiny LMDBs of 128 train and 100 test images, so that an
epoch (a pass over the train LMDB, ceil(128 / 64)) is 2 iterations and a test
pass 1 batch; tests/test_mnist_own_data.py covers the data options and checks."""
import json
import os
import shutil
import statistics
import stat
import sys

import numpy as np
import pytest

pytest.importorskip("caffe.proto.caffe_pb2", reason="pycaffe not built (solver copies need it)")

from gencaffe import caffe_log, solver_config  # noqa: E402
from gencaffe.data import mnist as mnist_data  # noqa: E402
from gencaffe.experiments import mnist_report, mnist_runs  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAKE_CAFFE = os.path.join(REPO, "tests", "fixtures", "fake_caffe.py")
TRAIN_IMAGES, TEST_IMAGES = 128, 100   # 2 iterations per epoch: 25 epochs = 50 iterations


def write_lmdbs(data_dir, train=TRAIN_IMAGES, test=TEST_IMAGES, shape=(28, 28), labels=10, seed=0):
    """Tiny Datum LMDBs as tools/make_mnist_lmdb.py writes them."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("test", test)):
        images = rng.integers(0, 256, size=(count,) + tuple(shape), dtype=np.uint8)
        mnist_data.write_datum_lmdb(os.path.join(str(data_dir), "mnist_%s_lmdb" % split), images,
                                    np.arange(count) % labels)


def make_fake_caffe(folder, calls, monkeypatch):
    caffe = folder / "caffe"
    caffe.write_text('#!/bin/sh\nexec "%s" "%s" "$@"\n' % (sys.executable, FAKE_CAFFE))
    caffe.chmod(caffe.stat().st_mode | stat.S_IEXEC)
    calls.write_text("")
    monkeypatch.setenv("FAKE_CAFFE_CALLS", str(calls))
    return caffe


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """A repo copy with the committed solvers/models, tiny LMDBs in data/mnist
    and a fake caffe."""
    for folder in ("solvers", "models"):
        shutil.copytree(os.path.join(REPO, folder), tmp_path / folder)
    write_lmdbs(tmp_path / "data" / "mnist")
    calls = tmp_path / "calls.txt"
    caffe = make_fake_caffe(tmp_path, calls, monkeypatch)
    messages = []
    settings = mnist_runs.Settings(repo=str(tmp_path), caffe=str(caffe), runs_dir="runs/mnist",
                                   switch_rule="ess<0.1", progress_every_s=1e9, log=messages.append)
    assert settings.iterations_per_epoch == 2 and settings.test_iterations == 1
    return settings, calls


def call_lines(calls):
    return [line for line in calls.read_text().splitlines() if line]


def test_committed_solvers_are_copied_not_edited(sandbox):
    settings, _ = sandbox
    before = {n: open(os.path.join(REPO, "solvers", n)).read() for n in os.listdir(os.path.join(REPO, "solvers"))}
    mnist_runs.Runner(settings).run_approach("dg", seed=3)
    copy = solver_config.load_solver(os.path.join(settings.repo, "runs/mnist/dg/seed3/solver.prototxt"))
    assert copy.random_seed == 3
    assert copy.snapshot_prefix == "runs/mnist/dg/seed3/lenet"
    assert (copy.max_iter, copy.test_interval) == (50, 2)
    assert copy.base_lr == pytest.approx(0.01, rel=1e-6)
    # the run's own net: the generator's lenet_dg with the data dir's LMDBs
    assert copy.net == "runs/mnist/dg/seed3/net.prototxt"
    net_text = open(os.path.join(settings.repo, copy.net)).read()
    committed = open(os.path.join(REPO, "models", "lenet", "lenet_dg.prototxt")).read()
    body = lambda text: [l for l in text.splitlines() if not l.startswith("#")]
    assert body(net_text) == body(committed)          # default data dir: the same net
    after = {n: open(os.path.join(REPO, "solvers", n)).read() for n in before}
    assert before == after


def test_data_dir_and_gpu_reach_the_run(sandbox, tmp_path):
    """--data-dir: the run's nets read that folder's LMDBs; --gpu: caffe train
    -gpu ID and solver_mode GPU, and the spec says so."""
    settings, calls = sandbox
    settings.data_dir = str(tmp_path / "my_mnist")
    write_lmdbs(settings.data_dir)
    settings.gpu = 1
    mnist_runs.Runner(settings).run_approach("gg", seed=2)
    run_dir = os.path.join(settings.repo, "runs/mnist/gg/seed2")
    net = open(os.path.join(run_dir, "net.prototxt")).read()
    assert 'source: "%s/mnist_train_lmdb"' % settings.data_dir in net
    assert 'source: "%s/mnist_test_lmdb"' % settings.data_dir in net
    assert 'type: "GenerativeLoss"' in net
    solver = solver_config.load_solver(os.path.join(run_dir, "solver.prototxt"))
    assert solver.solver_mode == solver.GPU
    assert call_lines(calls)[0].split()[-2:] == ["-gpu", "1"]
    done = json.load(open(os.path.join(run_dir, "done.json")))
    assert done["spec"]["device"] == "GPU"


def test_finished_runs_are_not_redone(sandbox):
    settings, calls = sandbox
    runner = mnist_runs.Runner(settings)
    runner.run_approach("gg_dg", seed=1)
    assert [line.split()[0] for line in call_lines(calls)] == [
        "runs/mnist/gg_dg/seed1/stage1/solver.prototxt", "runs/mnist/gg_dg/seed1/stage2/solver.prototxt"]
    # stage 2 starts from stage 1's final snapshot (16 epochs x 2 iterations)
    assert call_lines(calls)[1].split()[1] == "runs/mnist/gg_dg/seed1/stage1/lenet_iter_32.caffemodel"
    runner.run_approach("gg_dg", seed=1)
    assert len(call_lines(calls)) == 2


def test_interrupted_run_is_restarted_cleanly(sandbox, monkeypatch):
    settings, calls = sandbox
    monkeypatch.setenv("FAKE_CAFFE_FAIL_AT", "7")
    with pytest.raises(mnist_runs.RunFailed, match="simulated crash"):
        mnist_runs.Runner(settings).run_approach("dg", seed=2)
    run_dir = os.path.join(settings.repo, "runs/mnist/dg/seed2")
    assert not os.path.exists(os.path.join(run_dir, mnist_runs.DONE_NAME))
    assert not mnist_runs.dg_run(settings, 2).is_complete(settings)
    open(os.path.join(run_dir, "stale.caffemodel"), "w").close()

    monkeypatch.delenv("FAKE_CAFFE_FAIL_AT")
    mnist_runs.Runner(settings).run_approach("dg", seed=2)
    assert not os.path.exists(os.path.join(run_dir, "stale.caffemodel"))
    assert not os.path.exists(os.path.join(run_dir, mnist_runs.PARTIAL_LOG_NAME))
    assert mnist_runs.dg_run(settings, 2).is_complete(settings)
    assert len(call_lines(calls)) == 2


def test_run_with_a_deleted_final_snapshot_is_redone(sandbox):
    settings, calls = sandbox
    mnist_runs.Runner(settings).run_approach("dg", seed=1)
    os.remove(os.path.join(settings.repo, mnist_runs.dg_run(settings, 1).final_snapshot(settings)))
    mnist_runs.Runner(settings).run_approach("dg", seed=1)
    assert len(call_lines(calls)) == 2


def test_auto_switch_uses_the_gg_snapshot_of_the_first_low_ess_epoch(sandbox):
    settings, calls = sandbox
    mnist_runs.Runner(settings).run_approach("gg_dg_auto", seed=1)
    # fake ess = 0.5 / (epoch + 1): first epoch below 0.1 is epoch 5 (0.083)
    record = mnist_runs.read_switch_record(settings, 1)
    assert record["switch_epoch"] == 5
    stage2_solver, weights = call_lines(calls)[1].split()
    assert weights == "runs/mnist/gg/seed1/lenet_iter_10.caffemodel"
    stage2 = solver_config.load_solver(os.path.join(settings.repo, stage2_solver))
    assert stage2.max_iter == (25 - 5) * 2 and stage2.base_lr == pytest.approx(0.003)
    # the GG run it reused counts as the gg approach too
    mnist_runs.Runner(settings).run_approach("gg", seed=1)
    assert len(call_lines(calls)) == 2

    result = mnist_report.collect_seed(settings, "gg_dg_auto", 1)
    assert result.complete and result.switch_epoch == 5
    epochs = [p.epoch for p in result.test_curve]
    assert epochs == sorted(epochs) and epochs[0] == 0 and epochs[-1] == 25
    assert len(epochs) == len(set(epochs)) == 26
    assert [p.objective for p in result.test_curve][:6] == ["GG"] * 6
    # final error: stage 2's last test pass (its epoch 20): 0.95 + 0.020 - 0.0005
    assert result.final_error_percent == pytest.approx(100 * (1 - 0.9695))


def test_threshold_never_reached_means_no_switch(sandbox):
    settings, calls = sandbox
    settings.switch_rule = "ess<0.001"
    mnist_runs.Runner(settings).run_approach("gg_dg_auto", seed=1)
    assert mnist_runs.read_switch_record(settings, 1)["switch_epoch"] is None
    assert len(call_lines(calls)) == 1
    result = mnist_report.collect_seed(settings, "gg_dg_auto", 1)
    assert result.complete and result.switch_epoch is None


def make_log(ess_by_epoch, per_epoch=10):
    lines = []
    for epoch, ess in enumerate(ess_by_epoch):
        lines.append("I0 solver.cpp:347] Iteration %d, Testing net (#0)" % (epoch * per_epoch))
        lines.append("I0 solver.cpp:414]     Test net output #0: ess = %g" % ess)
    return caffe_log.parse_lines(lines)


def test_choose_switch_epoch():
    from gencaffe.experiments.switch_criteria import parse_criterion

    def choose(log, threshold, total_epochs=25):
        return parse_criterion("ess<%g" % threshold).choose(mnist_runs.epoch_tests(log, 10),
                                                            total_epochs)
    assert choose(make_log([0.05, 0.3, 0.2, 0.09, 0.05]), 0.1) == 3   # epoch 0 never counts
    assert choose(make_log([1.0, 0.3, 0.2]), 0.1) is None
    assert choose(make_log([1.0] * 25 + [0.01]), 0.1, total_epochs=25) is None  # no DG left
    with pytest.raises(ValueError, match="no 'ess' test output"):
        choose(caffe_log.parse_lines(["I0 solver.cpp:347] Iteration 10, Testing net (#0)",
                                      "I0 solver.cpp:414]     Test net output #0: loss = 1"]), 0.1)


def test_auto_switch_follows_another_rule(sandbox):
    """--switch-rule: the within-class ESS rule of the switch sweep (fake caffe:
    ess_within = 0.9 - 0.05 x epoch, below 0.72 first after epoch 4)."""
    settings, calls = sandbox
    settings.switch_rule = "ess_within<0.72"
    mnist_runs.Runner(settings).run_approach("gg_dg_auto", seed=1)
    record = mnist_runs.read_switch_record(settings, 1)
    assert (record["switch_epoch"], record["switch_rule"]) == (4, "ess_within<0.72")
    assert call_lines(calls)[1].split()[1] == "runs/mnist/gg/seed1/lenet_iter_8.caffemodel"
    assert mnist_report.collect_seed(settings, "gg_dg_auto", 1).switch_epoch == 4


def test_table_reports_each_seed_and_mean_sd(sandbox):
    settings, _ = sandbox
    runner = mnist_runs.Runner(settings)
    for seed in (1, 2, 4):
        runner.run_approach("dg", seed)
    results = mnist_report.collect(settings, ["dg", "gg"], [1, 2, 4, 5])
    table = mnist_report.table_markdown(results, [1, 2, 4, 5], settings)
    errors = [100 * (1 - (0.95 + 0.025 - 0.0005 * s)) for s in (1, 2, 4)]
    row = next(line for line in table.splitlines() if line.startswith("| DG |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:4] == ["%.2f" % e for e in errors] and cells[4] == "pending"
    assert cells[5] == "%.2f ± %.2f (3)" % (statistics.mean(errors), statistics.stdev(errors))
    # not the paper's data: no paper column, and the table says what the data were
    assert cells[6] == "-"
    assert "| GG | pending | pending | pending | pending | - | - |" in table
    assert "Data: not MNIST. Train `data/mnist/mnist_train_lmdb`: 128 images of 1x28x28" in table
    assert "ceil(128 / 64) = 2 iterations" in table and "smoke run" not in table

    # on the paper's data and schedule, the paper's numbers stand beside ours
    settings.is_mnist = lambda: True
    table = mnist_report.table_markdown(results, [1, 2, 4, 5], settings)
    assert "| GG | pending | pending | pending | pending | - | 0.85 |" in table
    assert "Data: MNIST" in table

    # a smoke run (an "epoch" of a fixed number of iterations) says so
    settings.epoch_iterations = 2
    table = mnist_report.table_markdown(results, [1, 2, 4, 5], settings)
    assert "smoke run" in table and "| GG | pending | pending | pending | pending | - | - |" in table


def test_later_stage_is_redone_when_its_input_snapshot_changes(sandbox):
    settings, calls = sandbox
    mnist_runs.Runner(settings).run_approach("gg_dg", seed=1)
    stage1, stage2 = mnist_runs.gg_dg_runs(settings, 1)
    assert stage2.is_complete(settings)
    with open(os.path.join(settings.repo, stage1.final_snapshot(settings)), "w") as handle:
        handle.write("other weights")  # as if stage 1 had been retrained differently
    assert stage1.is_complete(settings) and not stage2.is_complete(settings)
    mnist_runs.Runner(settings).run_approach("gg_dg", seed=1)
    assert len(call_lines(calls)) == 3


def test_a_command_on_a_subset_keeps_earlier_runs_in_the_table(sandbox, monkeypatch):
    """reproduce_mnist.py run for DG seed 1, then for GG seed 2: the table
    rewritten by the second holds both, and names the command covering both."""
    import importlib.util
    settings, calls = sandbox
    spec = importlib.util.spec_from_file_location(
        "reproduce_mnist", os.path.join(REPO, "tools", "reproduce_mnist.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    monkeypatch.setattr(tool, "REPO", settings.repo)
    monkeypatch.chdir(settings.repo)
    common = ["--caffe", settings.caffe, "--data-dir", "data/mnist", "--runs-dir", "runs/m",
              "--epochs", "2"]
    assert tool.main(common + ["--approaches", "dg", "--seeds", "1"]) == 0
    assert tool.main(common + ["--approaches", "gg", "--seeds", "2"]) == 0
    assert len(call_lines(calls)) == 2
    table = open(os.path.join(settings.repo, "runs", "m", "mnist_table1.md")).read()
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")[1:3]]
            for line in table.splitlines() if line.startswith("| DG |") or line.startswith("| GG |")}
    assert rows["DG"][0] != "pending" and rows["DG"][1] == "pending"
    assert rows["GG"][0] == "pending" and rows["GG"][1] != "pending"
    assert "by `tools/reproduce_mnist.py %s --seeds 1-2 --approaches dg,gg`" % " ".join(common) \
        in table
