"""The GG->DG switch sweep (tools/sweep_switch.py, gencaffe.experiments.sweep_switch /
switch_report) with the fake caffe of tests/fixtures: runs per point from the
one GG run per seed, resumability, the report, and the criteria."""
import os
import subprocess
import sys

import pytest

pytest.importorskip("caffe.proto.caffe_pb2", reason="pycaffe not built (solver copies need it)")

from gencaffe.experiments import mnist_runs, sweep_switch  # noqa: E402
from conftest import BUILD  # noqa: E402
from test_reproduce_mnist import make_fake_caffe, write_lmdbs  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(REPO, "tools", "sweep_switch.py")


def test_criteria_pick_the_documented_epochs():
    epochs = [(e, {"ess": 0.5 / (e + 1), "ess_within": 0.9 - 0.05 * e,
                   "accuracy": min(0.99, 0.9 + 0.02 * e)}) for e in range(1, 12)]
    below = sweep_switch.parse_criterion("a=ess_within<0.62")
    assert below.choose(epochs, 12) == 6                 # 0.9 - 0.3 = 0.60 < 0.62
    plateau = sweep_switch.parse_criterion("p=accuracy~0.001/2")
    assert plateau.choose(epochs, 12) == 7               # 0.99 at 5, 6 and 7
    assert sweep_switch.parse_criterion("x=ess<0.0001").choose(epochs, 12) is None
    with pytest.raises(ValueError, match=r"expected \[NAME=\]OUTPUT"):
        sweep_switch.parse_criterion("nonsense")
    with pytest.raises(ValueError, match="no 'cross_weight'"):
        sweep_switch.parse_criterion("c=cross_weight<1").choose(epochs, 12)
    with pytest.raises(ValueError, match="1..11"):
        sweep_switch.check_points([0, 4, 12], 12)


def test_sweep_trains_each_point_from_one_gg_run_and_reports(tmp_path, monkeypatch):
    import shutil
    for folder in ("solvers", "models", "tools", "python"):
        shutil.copytree(os.path.join(REPO, folder), tmp_path / folder,
                        ignore=shutil.ignore_patterns("__pycache__"))
    write_lmdbs(tmp_path / "data" / "mnist")
    calls = tmp_path / "calls.txt"
    caffe = make_fake_caffe(tmp_path, calls, monkeypatch)
    tool = str(tmp_path / "tools" / "sweep_switch.py")
    env = dict(os.environ, CAFFE_BUILD_DIR=BUILD)      # the copy has no build of its own
    args = ["--seeds", "1-2", "--epochs", "6", "--points", "1,3", "--jobs", "2",
            "--criterion", "w=ess_within<0.72", "--results-dir", "results"]
    result = subprocess.run([sys.executable, tool, "--caffe", str(caffe), *args],
                            capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = [l.split() for l in calls.read_text().splitlines() if l]
    # per seed: GG, DG, the points 1 and 3, and the criterion's epoch 4
    # (0.9 - 0.05 * 4 = 0.70 < 0.72), each stage-2 run from GG's snapshot
    assert len(lines) == 2 * 5
    for seed in (1, 2):
        for epoch in (1, 3, 4):
            line = next(l for l in lines if "switch/seed%d/epoch%d/" % (seed, epoch) in l[0])
            assert line[1] == "runs/mnist_switch_e6/gg/seed%d/lenet_iter_%d.caffemodel" % (
                seed, 2 * epoch)
    report = (tmp_path / "results" / "mnist_switch.md").read_text()
    assert "A shorter budget than the paper's 25 epochs: 6 epochs" in report
    assert "| 0 (DG alone) |" in report and "| 6 (GG alone) |" in report
    assert "| w | first epoch with test ess_within < 0.72 | 4, 4 |" in report
    assert (tmp_path / "results" / "mnist_switch.png").stat().st_size > 1000
    assert (tmp_path / "results" / "mnist_switch_diagnostics.png").stat().st_size > 1000
    # resumable: a second invocation trains nothing
    again = subprocess.run([sys.executable, tool, "--caffe", str(caffe), *args],
                           capture_output=True, text=True, timeout=600, env=env)
    assert again.returncode == 0 and len(calls.read_text().splitlines()) == 2 * 5

    # a shorter budget reuses the GG and DG runs: only its switch points train,
    # each for the rest of the 4 epochs; the criterion picks no epoch below 4
    short = ["--seeds", "1-2", "--epochs", "6", "--budget", "4", "--points", "1,2",
             "--criterion", "w=ess_within<0.72", "--results-dir", "results"]
    result = subprocess.run([sys.executable, tool, "--caffe", str(caffe), *short],
                            capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = [l.split() for l in calls.read_text().splitlines() if l][2 * 5:]
    assert len(lines) == 2 * 2
    assert all("switch_b4/seed" in l[0] for l in lines)
    solver = (tmp_path / "runs" / "mnist_switch_e6" / "switch_b4" / "seed1" / "epoch1" /
              "solver.prototxt").read_text()
    assert "max_iter: 6\n" in solver                  # 3 epochs of 2 iterations
    report = (tmp_path / "results" / "mnist_switch.md").read_text()
    assert "8 epochs" not in report and "4 epochs in all for every point" in report
    assert "the test pass after epoch 4 of 6-epoch runs" in report
    assert "| 4 (GG alone) |" in report
    assert "| w | first epoch with test ess_within < 0.72 | none (GG), none (GG) |" in report

    # a --report-only rewrite for seed 1 alone still holds seed 2's runs
    only = [a if a != "1-2" else "1" for a in short] + ["--report-only"]
    result = subprocess.run([sys.executable, tool, "--caffe", str(caffe), *only],
                            capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rewritten = (tmp_path / "results" / "mnist_switch.md").read_text()
    assert rewritten.split("\n")[3:] == report.split("\n")[3:]     # all but the command
    assert "--report-only" not in rewritten and "--seeds 1-2`" in rewritten


def test_bad_points_are_refused(tmp_path):
    result = subprocess.run([sys.executable, TOOL, "--epochs", "10", "--points", "5,10",
                             "--report-only"], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "1..9" in result.stderr


@pytest.mark.parametrize("approach", ["dg", "gg"])
def test_a_shorter_run_is_the_prefix_of_a_longer_one_in_caffe(tmp_path, approach):
    """--budget reads DG and GG alone off longer runs: with the LeNet solvers'
    inv learning rate, a seeded 3-epoch run's test passes are those of a
    5-epoch run, number for number (real Caffe, tiny LMDBs: 2 iterations an
    epoch)."""
    import shutil
    caffe = os.path.join(BUILD, "caffe", "tools", "caffe")
    if not os.access(caffe, os.X_OK):
        pytest.skip("caffe not built")
    for folder in ("solvers", "models"):
        shutil.copytree(os.path.join(REPO, folder), tmp_path / folder)
    write_lmdbs(tmp_path / "data" / "mnist")
    tests = {}
    for epochs in (3, 5):
        settings = mnist_runs.Settings(repo=str(tmp_path), caffe=caffe,
                                       runs_dir="runs/e%d" % epochs, total_epochs=epochs,
                                       progress_every_s=1e9, log=lambda message: None)
        run = (mnist_runs.dg_run if approach == "dg" else mnist_runs.gg_run)(settings, 7)
        mnist_runs.Runner(settings).ensure(run)
        tests[epochs] = mnist_runs.epoch_tests(run.parsed_log(settings),
                                               settings.iterations_per_epoch)
    assert [e for e, _ in tests[3]] == [1, 2, 3]
    assert tests[3] == tests[5][:3]
    # and the sweep's reading of the budget agrees with the short run's end
    assert sweep_switch.error_at_epoch(run, settings, 3) == pytest.approx(
        100 * (1 - tests[3][-1][1]["accuracy"]))
    settings.total_epochs = 5
    sweep_switch.check_budget(settings, 3)
    with pytest.raises(ValueError, match="2..5"):
        sweep_switch.check_budget(settings, 6)
