"""The MNIST protocol on your own data (issue 20), with the fake caffe of
tests/fixtures: the epoch from the train LMDB's entry count, --epochs and
--gg-epochs, data that do not fit LeNet refused before anything is written
(messages naming the file), runs redone when the data change, and the whole
chain IDX files -> tools/make_mnist_lmdb.py -> tools/reproduce_mnist.py run
from another directory, with the table stating the data and the schedule."""
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("caffe.proto.caffe_pb2", reason="pycaffe not built (solver copies need it)")

from gencaffe import solver_config  # noqa: E402
from gencaffe.data import datum_check  # noqa: E402
from gencaffe.data import mnist as mnist_data  # noqa: E402
from gencaffe.experiments import mnist_cli, mnist_report, mnist_runs  # noqa: E402
from test_idx_data import make_set  # noqa: E402
from test_reproduce_mnist import REPO, call_lines, make_fake_caffe, sandbox, write_lmdbs  # noqa: E402,F401

RUNNER = os.path.join(REPO, "tools", "reproduce_mnist.py")
MAKE_LMDB = os.path.join(REPO, "tools", "make_mnist_lmdb.py")


def load_runner_cli():
    spec = importlib.util.spec_from_file_location("reproduce_mnist_cli", RUNNER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------ epochs from the data

def test_epoch_is_a_pass_over_the_train_lmdb_and_a_test_pass_reads_the_test_lmdb(sandbox):
    settings, _ = sandbox
    write_lmdbs(os.path.join(settings.repo, "other"), train=130, test=150)
    settings.data_dir = "other"
    assert settings.iterations_per_epoch == 3          # ceil(130 / 64)
    assert settings.test_iterations == 2               # ceil(150 / 100)
    settings.total_epochs = 4
    mnist_runs.Runner(settings).run_approach("dg", seed=1)
    solver = solver_config.load_solver(os.path.join(settings.repo,
                                                    "runs/mnist/dg/seed1/solver.prototxt"))
    assert (solver.max_iter, solver.test_interval, list(solver.test_iter)) == (12, 3, [2])
    table = mnist_report.table_markdown(mnist_report.collect(settings, ["dg"], [1]), [1], settings)
    assert "# Your data / LeNet: test error (%) after 4 epochs" in table
    assert "ceil(130 / 64) = 3 iterations" in table
    assert "reads 200 test images (2 batches of 100: the last 50 are read twice)" in table
    assert "| DG | %.2f |" % (100 * (1 - (0.95 + 0.004 - 0.0005))) in table


def test_epochs_and_gg_epochs_set_the_schedule_and_stage2_starts_from_stage1(sandbox):
    settings, calls = sandbox
    settings.total_epochs, settings.gg_epochs = 5, 2
    mnist_runs.Runner(settings).run_approach("gg_dg", seed=1)
    stage1_solver, stage1_weights = call_lines(calls)[0].split()
    stage2_solver, stage2_weights = call_lines(calls)[1].split()
    load = lambda path: solver_config.load_solver(os.path.join(settings.repo, path))
    assert load(stage1_solver).max_iter == 2 * 2 and stage1_weights == "None"
    assert load(stage2_solver).max_iter == 3 * 2
    assert stage2_weights == "runs/mnist/gg_dg/seed1/stage1/lenet_iter_4.caffemodel"
    result = mnist_report.collect_seed(settings, "gg_dg", 1)
    assert result.complete and result.test_curve[-1].epoch == 5
    assert mnist_report.approach_title("gg_dg", settings) == "GG+DG (switch at 2)"
    # the committed stage-1 solver's 16 epochs are the default for 25 epochs
    settings.gg_epochs, settings.total_epochs = None, 25
    assert settings.stage1_epochs() == 16


@pytest.mark.parametrize("total, gg, message", [
    (0, None, r"--epochs must be at least 1"),
    (10, 10, r"--gg-epochs 10: GG\+DG needs 1 <= GG epochs < total epochs \(10\)"),
    (10, 0, r"--gg-epochs 0"),
    (1, None, r"--gg-epochs 0"),    # one epoch leaves no room for two stages
])
def test_impossible_schedules_are_refused(sandbox, total, gg, message):
    settings, _ = sandbox
    settings.total_epochs, settings.gg_epochs = total, gg
    with pytest.raises(ValueError, match=message):
        settings.check()
    if total >= 1:
        settings.check(approaches=("dg", "gg"))   # no GG+DG: no GG stage to fit


def test_default_gg_epochs_keep_the_papers_share(sandbox):
    settings, _ = sandbox
    shares = {}
    for total in (25, 10, 4, 2):
        settings.total_epochs = total
        shares[total] = settings.stage1_epochs()
    assert shares == {25: 16, 10: 6, 4: 3, 2: 1}


# ------------------------------------------------------------ data that do not fit

def empty_lmdb(path):
    import lmdb
    lmdb.open(str(path), map_size=1 << 20).close()


@pytest.mark.parametrize("make, message", [
    (lambda d: write_lmdbs(d, shape=(32, 32)),
     r"train LMDB .*/bad/mnist_train_lmdb holds 1x32x32 images \(record 00000000\), but LeNet "
     r"takes 1x28x28 input"),
    (lambda d: write_lmdbs(d, labels=12),
     r"train LMDB .*/bad/mnist_train_lmdb has labels 0..11 \(label 11 first at record 00000011; "
     r"20 records outside 0..9\), but LeNet has 10 classes \(0..9\)"),
    (lambda d: None, r"train LMDB .*/bad/mnist_train_lmdb does not exist"),
    (lambda d: (os.makedirs(d / "mnist_train_lmdb")),
     r"train LMDB .*/bad/mnist_train_lmdb is not an LMDB: it holds no data.mdb"),
    (lambda d: (os.makedirs(d), empty_lmdb(d / "mnist_train_lmdb")),
     r"train LMDB .*/bad/mnist_train_lmdb holds no records"),
])
def test_data_that_do_not_fit_lenet_are_named(sandbox, make, message):
    settings, calls = sandbox
    bad = os.path.join(settings.repo, "bad")
    make(__import__("pathlib").Path(bad))
    settings.data_dir = bad
    with pytest.raises(datum_check.DataCheckError, match=message):
        settings.check()


def test_a_record_of_another_size_and_the_test_lmdb_are_checked(tmp_path):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (28, 28), dtype=np.uint8) for _ in range(3)]
    images.append(rng.integers(0, 256, (28, 27), dtype=np.uint8))
    db = str(tmp_path / "db")
    mnist_data.write_datum_lmdb(db, images, [0, 1, 2, 3])
    summary = datum_check.summarize(db, "test LMDB")
    problems = datum_check.mismatches(summary, "test LMDB", (1, 28, 28), 3)
    assert problems[0].startswith("test LMDB %s: record 00000003 is 1x28x27, unlike the first "
                                  "record 00000000 (1x28x28)" % db)
    assert "has labels 0..3 (label 3 first at record 00000003; 1 records outside 0..2)" in problems[1]


def test_more_classes_give_a_wider_net_and_admit_their_labels(sandbox):
    settings, _ = sandbox
    write_lmdbs(os.path.join(settings.repo, "letters"), labels=26)
    settings.data_dir, settings.num_classes = "letters", 26
    settings.check()
    mnist_runs.Runner(settings).run_approach("dg", seed=1)
    net = open(os.path.join(settings.repo, "runs/mnist/dg/seed1/net.prototxt")).read()
    assert "num_output: 26" in net and "num_output: 10" not in net


def test_runs_are_redone_when_the_data_change(sandbox):
    settings, calls = sandbox
    mnist_runs.Runner(settings).run_approach("dg", seed=1)
    run = mnist_runs.dg_run(settings, 1)
    assert run.is_complete(settings)
    write_lmdbs(os.path.join(settings.repo, "data", "mnist"), seed=5)  # same paths, new images
    fresh = mnist_runs.Settings(**{k: getattr(settings, k) for k in (
        "repo", "caffe", "runs_dir", "switch_rule", "progress_every_s", "log")})
    assert not run.is_complete(fresh)
    mnist_runs.Runner(fresh).run_approach("dg", seed=1)
    assert len(call_lines(calls)) == 2


# ------------------------------------------------------------ the CLIs end to end

def run(args, cwd, env_extra=None):
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=str(cwd),
                          env=env, timeout=300)


def test_idx_files_to_table_from_another_directory(tmp_path, monkeypatch):
    """The README's protocol on another data set, from a directory that is not
    the repository: convert, train DG / GG / GG+DG for chosen epochs, report."""
    work = tmp_path / "elsewhere"
    make_set(work / "fashion_idx", train=128, test=100)
    proc = run([MAKE_LMDB, "--idx-dir", "fashion_idx", "--out-dir", "fashion"], work)
    assert proc.returncode == 0, proc.stderr
    calls = tmp_path / "calls.txt"
    caffe = make_fake_caffe(tmp_path, calls, monkeypatch)
    proc = run([RUNNER, "--data-dir", "fashion", "--epochs", "4", "--gg-epochs", "3",
                "--seeds", "1", "--approaches", "dg,gg,gg_dg", "--caffe", str(caffe),
                "--runs-dir", "runs"], work)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 epochs of 2 iterations, GG+DG switch after 3" in proc.stdout
    lines = call_lines(calls)
    assert len(lines) == 4
    assert lines[3].split()[1] == str(work / "runs/gg_dg/seed1/stage1/lenet_iter_6.caffemodel")
    net = open(work / "runs/dg/seed1/net.prototxt").read()
    assert 'source: "%s"' % (work / "fashion" / "mnist_train_lmdb") in net
    table = open(work / "runs" / "mnist_table1.md").read()   # beside the runs, not results/
    assert "after 4 epochs" in table and "GG+DG (switch at 3)" in table
    assert "Train `%s`: 128 images of 1x28x28, labels 0..9" % (work / "fashion" / "mnist_train_lmdb") in table
    assert "Schedule: 4 epochs; GG+DG: GG for 3 epochs, then DG (base_lr 0.003) for 1." in table
    # a second invocation trains nothing
    proc = run([RUNNER, "--data-dir", "fashion", "--epochs", "4", "--gg-epochs", "3",
                "--seeds", "1", "--approaches", "dg,gg,gg_dg", "--caffe", str(caffe),
                "--runs-dir", "runs"], work)
    assert proc.returncode == 0 and len(call_lines(calls)) == 4


def test_runner_refuses_mismatched_data_before_creating_anything(tmp_path, monkeypatch):
    write_lmdbs(tmp_path / "big", shape=(32, 32))
    caffe = make_fake_caffe(tmp_path, tmp_path / "calls.txt", monkeypatch)
    proc = run([RUNNER, "--data-dir", "big", "--seeds", "1", "--caffe", str(caffe),
                "--runs-dir", "runs", "--results-dir", "results"], tmp_path)
    assert proc.returncode == 2
    assert ("error: train LMDB %s holds 1x32x32 images" % (tmp_path / "big" / "mnist_train_lmdb")
            in proc.stdout)
    assert "error: test LMDB" in proc.stdout          # both are reported at once
    assert not (tmp_path / "runs").exists() and not (tmp_path / "results").exists()
    proc = run([RUNNER, "--train-lmdb", "nowhere/train_lmdb", "--test-lmdb", "big/mnist_test_lmdb",
                "--caffe", str(caffe), "--runs-dir", "runs"], tmp_path)
    assert proc.returncode == 2
    assert "error: train LMDB %s does not exist" % (tmp_path / "nowhere" / "train_lmdb") in proc.stdout
    assert not (tmp_path / "runs").exists()


def test_default_runs_dir_keeps_other_data_and_schedules_apart(tmp_path):
    cli = load_runner_cli()
    write_lmdbs(tmp_path / "fashion")
    settings_for = lambda *argv: mnist_cli.make_settings(cli.parse_args(list(argv)), REPO)
    data = ["--data-dir", str(tmp_path / "fashion")]
    assert settings_for(*data).runs_dir == "runs/fashion"
    assert settings_for(*data, "--epochs", "10", "--gg-epochs", "6").runs_dir == "runs/fashion_e10g6"
    assert settings_for(*data, "--epoch-iterations", "3").runs_dir == "runs/fashion_smoke3"
    assert settings_for(*data, "--name", "fm", "--epochs", "20").runs_dir == "runs/fm_e20g13"
    assert settings_for(*data, "--gg-epochs", "10").runs_dir == "runs/fashion_e25g10"
    args = cli.parse_args(data)
    mnist_cli.make_settings(args, REPO)
    assert args.results_dir == "runs/fashion"         # results/ is MNIST's only
    explicit = settings_for(*data, "--runs-dir", str(tmp_path / "mine"))
    assert explicit.runs_dir == str(tmp_path / "mine")
    inside = settings_for(*data, "--runs-dir", os.path.join(REPO, "runs", "x"))
    assert inside.runs_dir == os.path.join("runs", "x")   # repo-relative inside the repo


def test_epochs_scale_is_deprecated_and_says_what_it_does(tmp_path, capsys):
    cli = load_runner_cli()
    write_lmdbs(tmp_path / "d", train=640)           # an epoch of 10 iterations
    args = cli.parse_args(["--data-dir", str(tmp_path / "d"), "--epochs-scale", "0.3"])
    settings = mnist_cli.make_settings(args, REPO)
    assert settings.epoch_iterations == 3 and settings.total_epochs == 25
    out = capsys.readouterr().out
    assert "--epochs-scale is deprecated: it shortens each epoch (here to 3 iterations), it does " \
           "not change the number of epochs. Same run: --epoch-iterations 3" in out
    assert settings.runs_dir.endswith("d_smoke3")
    with pytest.raises(SystemExit):
        cli.parse_args(["--epochs-scale", "0.3", "--epoch-iterations", "3"])


def test_switch_rule_default_and_the_ess_shorthand(sandbox):
    """gg_dg_auto's rule: the sweep's closest rule by default; --ess-threshold T
    is the old batch-ESS rule; not both; a bad rule is named before any run."""
    settings, _ = sandbox
    cli = load_runner_cli()
    base = ["--data-dir", os.path.join(settings.repo, "data", "mnist"),
            "--caffe", settings.caffe]
    assert mnist_cli.make_settings(cli.parse_args(base), REPO).switch_rule == \
        mnist_runs.DEFAULT_SWITCH_RULE == "cross_weight~0.002/2"
    shorthand = cli.parse_args(base + ["--ess-threshold", "0.15"])
    assert mnist_cli.make_settings(shorthand, REPO).switch_rule == "ess<0.15"
    with pytest.raises(SystemExit):
        cli.parse_args(base + ["--ess-threshold", "0.15", "--switch-rule", "ess<0.2"])
    with pytest.raises(ValueError, match="criterion 'loss<1'"):
        mnist_cli.make_settings(cli.parse_args(base + ["--switch-rule", "loss<1"]), REPO)
