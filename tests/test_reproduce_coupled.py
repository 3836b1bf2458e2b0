"""The coupled-net MNIST runner (gencaffe.experiments.coupled_runs / coupled_report,
tools/reproduce_coupled.py) with a stand-in caffe (tests/fixtures/fake_caffe.py):
per-run solver and net copies, resuming, the report's numbers and curves."""
import importlib.util
import json
import os
import shutil
import stat
import statistics
import sys

import numpy as np
import pytest

pytest.importorskip("caffe.proto.caffe_pb2", reason="pycaffe not built (solver copies need it)")

from gencaffe import solver_config  # noqa: E402
from gencaffe.experiments import coupled_report, coupled_runs  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAKE_CAFFE = os.path.join(REPO, "tests", "fixtures", "fake_caffe.py")
PER_EPOCH = 2   # iterations per "epoch" in these runs


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """A repo copy with the committed solvers/models, empty LMDBs (a folder with
    an empty data.mdb: the runners check for that file) and a fake caffe."""
    for folder in ("solvers", "models"):
        shutil.copytree(os.path.join(REPO, folder), tmp_path / folder)
    for split in ("train", "test"):
        db = tmp_path / "data" / "mnist" / ("mnist_%s_lmdb" % split)
        db.mkdir(parents=True)
        (db / "data.mdb").write_bytes(b"")
    caffe = tmp_path / "caffe"
    caffe.write_text('#!/bin/sh\nexec "%s" "%s" "$@"\n' % (sys.executable, FAKE_CAFFE))
    caffe.chmod(caffe.stat().st_mode | stat.S_IEXEC)
    calls = tmp_path / "calls.txt"
    calls.write_text("")
    monkeypatch.setenv("FAKE_CAFFE_CALLS", str(calls))
    messages = []
    settings = coupled_runs.Settings(repo=str(tmp_path), caffe=str(caffe),
                                     epoch_iterations=PER_EPOCH, progress_every_s=1e9,
                                     log=messages.append)
    return settings, calls


def call_lines(calls):
    return [line for line in calls.read_text().splitlines() if line]


def test_each_run_gets_a_solver_copy_and_the_generators_net(sandbox):
    settings, calls = sandbox
    before = {n: open(os.path.join(REPO, "solvers", n)).read()
              for n in os.listdir(os.path.join(REPO, "solvers"))}
    assert coupled_runs.Runner(settings).run_arm("cnn_eq22", 2) is True
    run_dir = os.path.join(settings.repo, "runs/coupled_mnist/cnn_eq22/seed2")
    solver = solver_config.load_solver(os.path.join(run_dir, "solver.prototxt"))
    # the committed solver's 3 epochs, at 2 iterations each; seed and paths set
    assert (solver.random_seed, solver.max_iter, solver.test_interval) == (2, 6, 2)
    assert solver.type == "Adam" and solver.base_lr == pytest.approx(0.001)
    assert solver.snapshot_prefix == "runs/coupled_mnist/cnn_eq22/seed2/coupled_cnn"
    assert solver.net == "runs/coupled_mnist/cnn_eq22/seed2/net.prototxt"
    net = open(os.path.join(run_dir, "net.prototxt")).read()
    committed = open(os.path.join(REPO, "models/coupled_cnn/train_val_eq22.prototxt")).read()
    body = lambda text: [l for l in text.splitlines() if not l.startswith("#")]
    assert body(net) == body(committed)     # default data dir: the committed net
    assert call_lines(calls) == ["runs/coupled_mnist/cnn_eq22/seed2/solver.prototxt None"]
    done = json.load(open(os.path.join(run_dir, "done.json")))
    assert done["spec"]["epochs"] == 3 and done["spec"]["arm"] == "cnn_eq22"
    after = {n: open(os.path.join(REPO, "solvers", n)).read() for n in before}
    assert before == after


def test_data_dir_epochs_and_gpu_reach_the_run(sandbox, tmp_path):
    settings, calls = sandbox
    settings.data_dir = str(tmp_path / "elsewhere")
    settings.epochs = 4
    settings.gpu = 0
    coupled_runs.Runner(settings).run_arm("dense_eq21", 1)
    run_dir = os.path.join(settings.repo, "runs/coupled_mnist/dense_eq21/seed1")
    net = open(os.path.join(run_dir, "net.prototxt")).read()
    assert 'source: "%s/mnist_train_lmdb"' % settings.data_dir in net
    assert 'type: "Embed"' in net and 'type: "SigmoidCrossEntropyLoss"' in net
    solver = solver_config.load_solver(os.path.join(run_dir, "solver.prototxt"))
    assert solver.max_iter == 8 and solver.solver_mode == solver.GPU
    assert call_lines(calls)[0].endswith("-gpu 0")


def test_finished_runs_are_skipped_and_changed_ones_redone(sandbox):
    settings, calls = sandbox
    runner = coupled_runs.Runner(settings)
    runner.run_arm("dense_disc", 1)
    assert runner.run_arm("dense_disc", 1) is False
    assert len(call_lines(calls)) == 1
    settings.epochs = 2            # another schedule: the run's spec changed
    assert coupled_runs.Runner(settings).run_arm("dense_disc", 1) is True
    assert len(call_lines(calls)) == 2


def test_interrupted_run_restarts_cleanly(sandbox, monkeypatch):
    settings, calls = sandbox
    monkeypatch.setenv("FAKE_CAFFE_FAIL_AT", "3")
    with pytest.raises(coupled_runs.RunFailed, match="simulated crash"):
        coupled_runs.Runner(settings).run_arm("cnn_eq21", 1)
    run = coupled_runs.run_for(settings, "cnn_eq21", 1)
    assert not run.is_complete(settings)
    partial = coupled_report.collect_seed(settings, "cnn_eq21", 1)
    assert not partial.complete and [p.epoch for p in partial.test] == [0, 1]
    monkeypatch.delenv("FAKE_CAFFE_FAIL_AT")
    coupled_runs.Runner(settings).run_arm("cnn_eq21", 1)
    assert run.is_complete(settings) and len(call_lines(calls)) == 2
    assert not os.path.exists(os.path.join(settings.repo, run.run_dir,
                                           coupled_runs.PARTIAL_LOG_NAME))


def test_a_solver_naming_another_net_is_refused(sandbox):
    settings, _ = sandbox
    path = os.path.join(settings.repo, "solvers", "coupled_cnn_eq22.prototxt")
    text = open(path).read().replace("train_val_eq22", "train_val_eq21")
    open(path, "w").write(text)
    with pytest.raises(ValueError, match="names net 'models/coupled_cnn/train_val_eq21.prototxt'"):
        coupled_runs.Runner(settings).run_arm("cnn_eq22", 1)
    with pytest.raises(ValueError, match="unknown arm 'cnn_eq23'"):
        coupled_runs.arm("cnn_eq23")


def test_report_numbers_curves_and_pending_cells(sandbox, tmp_path):
    settings, _ = sandbox
    runner = coupled_runs.Runner(settings)
    for seed in (1, 2, 3):
        runner.run_arm("cnn_eq22", seed)
    runner.run_arm("dense_disc", 1)
    arms, seeds = ["dense_disc", "cnn_eq22", "cnn_eq21"], [1, 2, 3]
    results_dir = str(tmp_path / "results")
    path = coupled_report.write_report(settings, arms, seeds, results_dir, "cmd", samples=False)
    text = open(path).read()
    # fake caffe: accuracy = 0.95 + 0.001 epoch - 0.0005 seed, rev_loss = 0.3 - 0.01 e - 0.001 s
    acc = [0.95 + 0.003 - 0.0005 * s for s in seeds]
    rev = [0.3 - 0.03 - 0.001 * s for s in seeds]
    row = next(l for l in text.splitlines() if l.startswith("| CNN, Eq. 22 |") and "0.990" in l)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:4] == ["%.4f" % a for a in acc]
    assert cells[4] == "%.4f ± %.4f (3)" % (statistics.mean(acc), statistics.stdev(acc))
    rev_row = next(l for l in text.splitlines() if l.startswith("| CNN, Eq. 22 |") and "0.14" in l)
    cells = [c.strip() for c in rev_row.strip("|").split("|")]
    assert cells[1:4] == ["%.4f" % r for r in rev]
    assert "| CNN, Eq. 21 | pending | pending | pending | - | 0.989 |" in text
    # dense: the committed 10 epochs
    assert "| dense, discriminative | 0.9595 | pending | pending | 0.9595 (1) | - |" in text
    # disc arms have no reverse loss row
    assert len([l for l in text.splitlines() if l.startswith("| dense, discriminative")]) == 1
    assert "Smoke run" in text and "2 iterations per 'epoch'" in text
    assert "CNN, Eq. 22: 3 epoch(s) of 2 iterations (batch 32)" in text
    assert os.path.getsize(os.path.join(results_dir, coupled_report.CURVES_NAME)) > 1000
    # training curves: the displayed TRAIN outputs averaged per epoch
    result = coupled_report.collect_seed(settings, "cnn_eq22", 1)
    assert [p.epoch for p in result.train] == [1, 2, 3]
    assert [p.outputs["accuracy"] for p in result.train] == pytest.approx([0.91, 0.92, 0.93])
    assert [p.epoch for p in result.test] == [0, 1, 2, 3]
    notes = tmp_path / "results" / coupled_report.NOTES_NAME
    notes.write_text("## What we see\n\nhand-written\n")
    text = open(coupled_report.write_report(settings, arms, seeds, results_dir,
                                            samples=False)).read()
    assert text.rstrip().endswith("hand-written")
    # curves: a row of panels per net with data, not an empty dense row
    import matplotlib.image
    curves = os.path.join(results_dir, coupled_report.CURVES_NAME)
    two_rows = matplotlib.image.imread(curves).shape[0]
    coupled_report.write_report(settings, ["cnn_eq22"], seeds, results_dir, samples=False)
    assert matplotlib.image.imread(curves).shape[0] == pytest.approx(two_rows / 2, abs=2)


def test_reverse_loss_references():
    """Class-mean references on a toy set: two classes of 2-pixel images."""
    train_x = np.array([[1.0, 0.0], [0.5, 0.0], [0.0, 1.0], [0.0, 0.5]])
    train_y = np.array([0, 0, 1, 1])
    test_x = np.array([[1.0, 0.0], [0.0, 0.5]])
    test_y = np.array([0, 1])
    ref = coupled_report.reverse_loss_references(train_x, train_y, test_x, test_y)

    def bce(p, q):
        q = np.clip(q, 1e-7, 1 - 1e-7)
        return float(np.mean(-(p * np.log(q) + (1 - p) * np.log(1 - q))))
    assert ref["class_mean_train"] == pytest.approx(
        bce(test_x, np.array([[0.75, 0.0], [0.0, 0.75]])))
    assert ref["class_mean_test"] == pytest.approx(bce(test_x, test_x))   # one image per class
    assert ref["entropy"] == pytest.approx(bce(test_x, test_x))
    assert ref["global_mean"] == pytest.approx(bce(test_x, np.array([[0.375, 0.375]] * 2)))
    assert ref["class_mean_test"] <= ref["class_mean_train"] <= ref["global_mean"]


def _tool():
    spec = importlib.util.spec_from_file_location(
        "reproduce_coupled", os.path.join(REPO, "tools", "reproduce_coupled.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_end_to_end_and_resume(sandbox, monkeypatch, capsys):
    settings, calls = sandbox
    tool = _tool()
    monkeypatch.setattr(tool, "REPO", settings.repo)
    argv = ["--seeds", "1-2", "--arms", "dense_eq21,cnn_eq22", "--epoch-iterations", "2",
            "--epochs", "1", "--caffe", settings.caffe, "--no-samples", "--order", "seed"]
    assert tool.main(argv) == 0
    assert [line.split()[0] for line in call_lines(calls)] == [
        "runs/coupled_mnist_smoke2/%s/seed%d/solver.prototxt" % (a, s)
        for s in (1, 2) for a in ("dense_eq21", "cnn_eq22")]
    report = os.path.join(settings.repo, "runs/coupled_mnist_smoke2/coupled_mnist.md")
    assert "| dense, Eq. 21 | 0.9505 | 0.9500 |" in open(report).read()
    assert tool.main(argv) == 0                       # a second run is a no-op
    assert len(call_lines(calls)) == 4
    # A later command on another arm and seed: the rewritten report still holds
    # the earlier runs, and names the command that covers them all.
    later = ["--seeds", "3", "--arms", "dense_disc", "--epoch-iterations", "2", "--epochs", "1",
             "--caffe", settings.caffe, "--no-samples"]
    assert tool.main(later) == 0
    assert len(call_lines(calls)) == 5
    text = open(report).read()
    assert "| dense, Eq. 21 | 0.9505 | 0.9500 | pending |" in text
    assert "| dense, discriminative | pending | pending | 0.9495 |" in text
    assert "Written by `tools/reproduce_coupled.py --epoch-iterations 2 --epochs 1 --caffe %s " \
           "--no-samples --seeds 1-3 --arms dense_disc,dense_eq21,cnn_eq22`" % settings.caffe in text
    with pytest.raises(SystemExit):
        tool.parse_args(["--arms", "cnn_eq23"])
    assert "unknown arm cnn_eq23; choose from dense_disc," in capsys.readouterr().err


def test_cli_refuses_missing_lmdbs(sandbox, monkeypatch):
    settings, calls = sandbox
    tool = _tool()
    monkeypatch.setattr(tool, "REPO", settings.repo)
    shutil.rmtree(os.path.join(settings.repo, "data"))
    assert tool.main(["--caffe", settings.caffe, "--no-samples"]) == 2
    assert call_lines(calls) == []
