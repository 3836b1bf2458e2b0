"""The ImageNet smoke pipeline (tools/imagenet_smoke.py, gencaffe.experiments.imagenet_smoke)
with the real caffe at a tiny size; resumability of the runner; bad inputs; and
issue 12 item 2: a `caffe train` of a committed ImageNet solver killed after a
snapshot and resumed with -snapshot continues where it stopped.

The pipeline test checks the mechanics at 8 iterations; learning needs more:
with the committed solvers (base_lr 0.01) and AlexNet's initialisation the
loss leaves its plateau (ln C) slowly, and on the shape-and-texture-only
stand-in not within a few hundred iterations (README, "ImageNet"). The
smallest run found that shows AlexNet learning is test_alexnet_dg_learns:
4 classes with the colour cue, batch 16, 120 iterations (~2 min). GG at that
size does not show it (its val loss moved by less than the margin), and is
not asserted; results/imagenet_smoke.md has the full-size picture."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("caffe", reason="pycaffe not built")
pytest.importorskip("lmdb", reason="the lmdb module is needed to count LMDB records")

from conftest import BUILD, REPO  # noqa: E402
from gencaffe import caffe_log, solver_config  # noqa: E402
from gencaffe.data import standin  # noqa: E402
from gencaffe.experiments import caffe_runs, imagenet_data  # noqa: E402
from gencaffe.experiments import imagenet_smoke as smoke  # noqa: E402
from gencaffe.experiments import imagenet_smoke_eval as smoke_eval  # noqa: E402
from gencaffe.experiments import imagenet_smoke_report as smoke_report  # noqa: E402

CAFFE = os.path.join(BUILD, "caffe", "tools", "caffe")
CLI = os.path.join(REPO, "tools", "imagenet_smoke.py")
OVERRIDDEN = ("net", "max_iter", "test_iter", "test_interval", "display", "snapshot",
              "snapshot_prefix", "random_seed", "solver_mode")

# 4 classes, 6 train + 2 val images each (+ 2 corrupt files the data tool skips);
# AlexNet, batch 4, 8 iterations per approach (GG+DG: 5 + 3).
TINY = dict(classes=4, train_per_class=6, val_per_class=2, corrupt=2, colour_cue=1.0)
TINY_ARGS = ["--classes", "4", "--train-per-class", "6", "--val-per-class", "2", "--corrupt", "2",
             "--iterations", "8", "--batch", "4", "--test-batch", "8", "--display", "1",
             "--tests-per-run", "2", "--archs", "alexnet", "--jobs", "2", "--no-progress",
             "--progress-every", "1"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """The tiny stand-in and its LMDBs, made once through the runner's data step."""
    folder = tmp_path_factory.mktemp("smoke_data")
    settings = smoke.Settings(repo=REPO, caffe=CAFFE, lmdb_dir=str(folder / "lmdb"),
                              standin_dir=str(folder / "standin"),
                              standin=standin.StandinConfig(**TINY), log=lambda m: None)
    data = imagenet_data.prepare_data(settings)
    assert (data.classes, data.train_count, data.val_count) == (4, 24, 8)  # corrupt files skipped
    return folder


def settings_for(data_dir, tmp_path, **changes):
    values = dict(repo=REPO, caffe=CAFFE, runs_dir=str(tmp_path / "runs"),
                  lmdb_dir=str(data_dir / "lmdb"), standin_dir=None, iterations=30,
                  train_batch=8, test_batch=8, display=2, tests_per_run=2,
                  archs=("alexnet", "zf"), log=lambda m: None)
    values.update(changes)
    return smoke.Settings(**values)


def run_cli(args, timeout=900, **popen):
    env = dict(os.environ, CAFFE_BUILD_DIR=BUILD)
    return subprocess.run([sys.executable, CLI] + args, capture_output=True, text=True,
                          timeout=timeout, env=env, **popen)


# ------------------------------------------------------------------ cheap checks

def test_gg_dg_split_is_the_committed_solvers_45_of_70():
    for arch in ("alexnet", "zf"):
        assert smoke.stage_split(REPO, arch, 70) == (45, 25)
        assert smoke.stage_split(REPO, arch, 200) == (129, 71)
        assert smoke.stage_split(REPO, arch, 2) == (1, 1)
    with pytest.raises(imagenet_data.SmokeError, match="at least 2"):
        smoke.stage_split(REPO, "alexnet", 1)


def test_test_interval_divides_the_run_so_the_last_iteration_is_tested():
    assert [caffe_runs.test_interval(n, 4) for n in (200, 129, 71, 8, 5, 3, 1)] == [
        50, 43, 71, 2, 1, 1, 1]
    assert [caffe_runs.test_interval(n, 2) for n in (8, 5, 3)] == [4, 5, 3]


def test_runs_use_the_committed_solvers_with_only_the_listed_overrides(data_dir, tmp_path):
    settings = settings_for(data_dir, tmp_path)
    data = imagenet_data.check_data(settings)
    for arch in ("alexnet", "zf"):
        stage1, stage2 = smoke.approach_runs(settings, data, arch, "gg_dg")
        (dg,) = smoke.approach_runs(settings, data, arch, "dg")
        assert (stage1.iterations, stage2.iterations) == (19, 11)
        assert stage2.weights == stage1.final_snapshot(settings)
        for run, committed in ((dg, "dg"), (stage1, "gg_dg_stage1"), (stage2, "gg_dg_stage2")):
            from google.protobuf import text_format
            from caffe.proto import caffe_pb2
            ours = caffe_pb2.SolverParameter()
            text_format.Merge(run.solver, ours)
            template = solver_config.load_solver(
                os.path.join(REPO, "solvers", "%s_%s.prototxt" % (arch, committed)))
            assert ours.net == os.path.join(run.run_dir, "train_val.prototxt")
            # 8 val images / test batch 8; stage 2 with another seed than stage 1
            assert (ours.max_iter, list(ours.test_iter), ours.random_seed) == (
                run.iterations, [1], 1001 if committed == "gg_dg_stage2" else 1)
            assert ours.solver_mode == caffe_pb2.SolverParameter.CPU
            assert ours.snapshot_prefix == os.path.join(run.run_dir, arch)
            assert not ours.HasField("snapshot")
            for field in OVERRIDDEN:
                ours.ClearField(field)
                template.ClearField(field)
            assert ours == template  # base_lr (0.003 in stage 2), momentum, policy ... as committed


def test_run_nets_are_the_committed_nets_with_the_datas_parameters(data_dir, tmp_path):
    """Same layers as models/<arch>/train_val_*.prototxt; only the data layers' sources,
    batch sizes and mean file, and the class-score layer's num_output differ."""
    from google.protobuf import text_format
    from caffe.proto import caffe_pb2
    settings = settings_for(data_dir, tmp_path)
    data = imagenet_data.check_data(settings)
    for arch, score in (("alexnet", "fc8"), ("zf", "fc8")):
        for approach in ("dg", "gg"):
            (run,) = smoke.approach_runs(settings, data, arch, approach)
            ours, committed = caffe_pb2.NetParameter(), caffe_pb2.NetParameter()
            text_format.Merge(run.files["train_val.prototxt"], ours)
            with open(os.path.join(REPO, "models", arch, "train_val_%s.prototxt" % approach)) as f:
                text_format.Merge(f.read(), committed)
            # 4 classes: no top-5 accuracy layer (the generator leaves out top-k for k > C)
            kept = [l for l in committed.layer if l.name != "accuracy_top5"]
            assert len(kept) == len(committed.layer) - 1
            assert [l.name for l in ours.layer] == [l.name for l in kept]
            for mine, theirs in zip(ours.layer, kept):
                if mine.type == "Data":
                    assert mine.data_param.source in (
                        os.path.join(data.lmdb_dir, "train_lmdb"),
                        os.path.join(data.lmdb_dir, "val_lmdb"))
                    assert mine.data_param.batch_size == 8
                    assert mine.transform_param.mean_file == os.path.join(
                        data.lmdb_dir, "mean.binaryproto")
                    assert mine.transform_param.crop_size == theirs.transform_param.crop_size
                elif mine.name == score:
                    assert mine.inner_product_param.num_output == 4
                    assert theirs.inner_product_param.num_output == 1000
                else:
                    assert mine == theirs, mine.name
            assert "deploy.prototxt" in run.files


def test_missing_lmdb_is_named(data_dir, tmp_path):
    partial = tmp_path / "lmdb"
    shutil.copytree(data_dir / "lmdb", partial)
    shutil.rmtree(partial / "val_lmdb")
    settings = settings_for(data_dir, tmp_path, lmdb_dir=str(partial))
    with pytest.raises(imagenet_data.SmokeError, match=r"missing LMDB: .*val_lmdb"):
        imagenet_data.check_data(settings)
    result = run_cli(["--lmdb-dir", str(partial), "--runs-dir", str(tmp_path / "runs")])
    assert result.returncode == 2
    assert "missing LMDB: %s" % (partial / "val_lmdb") in result.stdout
    assert not (tmp_path / "runs").exists()


def test_class_count_mismatch_stops_before_training(data_dir, tmp_path):
    settings = settings_for(data_dir, tmp_path, num_classes=7)
    data = imagenet_data.check_data(settings)
    with pytest.raises(imagenet_data.SmokeError,
                       match=r"class count mismatch: .* scores 7 classes .*"
                             r"lmdb/classes\.txt lists 4"):
        smoke.approach_runs(settings, data, "alexnet", "dg")
    result = run_cli(["--lmdb-dir", str(data_dir / "lmdb"), "--num-classes", "7",
                      "--runs-dir", str(tmp_path / "runs")])
    assert result.returncode == 2 and "class count mismatch" in result.stdout
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------------ the pipeline

def _started(log_path):
    return os.path.exists(log_path) and caffe_log.parse_file(log_path).last_iteration >= 2


def test_pipeline_resumes_after_a_kill_and_then_is_a_no_op(data_dir, tmp_path):
    """The CLI on the tiny set: killed (SIGTERM) in its first training, run again to the
    end (the killed run restarts from iteration 0; stage 2 starts from stage 1's final
    snapshot), every run logs its losses and tests, the 5-crop evaluations, table and
    PNG are written; a third invocation trains and evaluates nothing."""
    runs, results = tmp_path / "runs", tmp_path / "results"
    args = TINY_ARGS[8:] + ["--lmdb-dir", str(data_dir / "lmdb"), "--runs-dir", str(runs),
                            "--results-dir", str(results)]
    env = dict(os.environ, CAFFE_BUILD_DIR=BUILD)
    first = subprocess.Popen([sys.executable, CLI] + args, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, env=env)
    partial = runs / "alexnet" / "dg" / "train.log.partial"
    deadline = time.time() + 300
    while not _started(str(partial)) and time.time() < deadline and first.poll() is None:
        time.sleep(0.5)
    first.send_signal(signal.SIGTERM)
    out, _ = first.communicate(timeout=120)
    assert first.returncode == 130, out
    assert "interrupted: stopping caffe processes" in out
    assert not (runs / "alexnet" / "dg" / "done.json").exists()
    killed_at = caffe_log.parse_file(str(partial)).last_iteration
    assert 2 <= killed_at < 8
    # no caffe left running, and none restarted by a worker that saw its caffe die
    time.sleep(2)
    assert subprocess.run(["pgrep", "-f", str(runs)], capture_output=True).stdout == b""
    assert caffe_log.parse_file(str(partial)).last_iteration == killed_at

    second = run_cli(args)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    log = caffe_log.parse_file(str(runs / "alexnet" / "dg" / "train.log"))
    assert log.finished and log.train_displays[0].iteration == 0  # restarted from scratch
    with open(runs / "alexnet" / "dg" / "train.log") as handle:
        assert handle.read().count("Solving ") == 1
    assert not list((runs / "alexnet").rglob("*.partial"))
    assert not list((runs / "alexnet").rglob("*.solverstate"))
    # stage 2 was started from stage 1's final snapshot (5 of 8 iterations: 45:25)
    assert "-weights %s" % (runs / "alexnet" / "gg_dg" / "stage1" / "alexnet_iter_5.caffemodel") \
        in second.stdout

    settings = settings_for(data_dir, tmp_path, archs=("alexnet",), iterations=8,
                            train_batch=4, display=1)
    collected = smoke_report.collect(settings, imagenet_data.check_data(settings))
    assert [(r.approach, r.complete) for r in collected] == [
        ("dg", True), ("gg", True), ("gg_dg", True)]
    for r in collected:
        assert [s.objective for s in r.stages] == {"dg": ["DG"], "gg": ["GG"],
                                                   "gg_dg": ["GG", "DG"]}[r.approach]
        for stage in r.stages:  # a display at every iteration, finite losses
            assert [x for x, _ in stage.curve] == list(range(stage.curve[0][0],
                                                             stage.curve[-1][0] + 1))
            assert all(abs(loss) < 100 for _, loss in stage.curve)
        assert r.loss_went_down(4) in (True, False)
        assert all(s.first_val_loss is not None and s.last_val_loss is not None
                   for s in r.stages)
        assert r.iterations == 8 and 0 <= r.top1_error <= 100
        # a test pass at the end of every run (stage 1 at 5, stage 2 at 3 = 8)
        assert [t[0] for t in r.test_curve] == ([0, 4, 8] if r.approach != "gg_dg"
                                                else [0, 5, 8])
    table = (results / "imagenet_smoke.md").read_text()
    assert table.count("| AlexNet |") == 3 and "pending" not in table
    assert (results / "imagenet_smoke.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    evals = {p: p.stat().st_mtime for p in runs.rglob(smoke_eval.EVAL_NAME)}
    assert len(evals) == 3
    for path in evals:
        assert json.loads(path.read_text())["crops"] == 5

    started = time.time()
    third = run_cli(args)
    assert third.returncode == 0, third.stdout[-3000:]
    assert " start: " not in third.stdout
    assert third.stdout.count("already complete, skipped") == 4
    assert third.stdout.count("5-crop evaluation already done") == 3
    assert {p: p.stat().st_mtime for p in evals} == evals
    assert time.time() - started < 120


# ------------------------------------------------------------------ item 2: -snapshot

def test_killed_training_resumes_from_its_snapshot(data_dir, tmp_path):
    """`caffe train` with solvers/alexnet_gg.prototxt (overridden to 9 iterations, a
    snapshot every 3), killed by SIGKILL after its iteration-3 snapshot, resumed with
    -snapshot <prefix>_iter_3.solverstate: the second log goes on from iteration 3 to 9
    and writes the final snapshot."""
    from gencaffe.nets import catalog
    settings = settings_for(data_dir, tmp_path, train_batch=4, test_batch=8)
    data = imagenet_data.check_data(settings)
    net = tmp_path / "train_val.prototxt"
    net.write_text(smoke.generated_net(catalog.architecture("alexnet"), "gg", data, settings))
    prefix = tmp_path / "snapshots" / "alexnet_gg"
    solver = solver_config.with_overrides(
        solver_config.load_solver(os.path.join(REPO, "solvers", "alexnet_gg.prototxt")),
        net=str(net), max_iter=9, snapshot=3, display=1, test_iter=[1], test_interval=100,
        snapshot_prefix=str(prefix), random_seed=1, solver_mode="CPU")
    solver_path = tmp_path / "solver.prototxt"
    solver_path.write_text(solver_config.solver_text(solver))
    env = dict(os.environ, GLOG_logtostderr="1", GLOG_minloglevel="0", OPENBLAS_NUM_THREADS="1")
    first_log = tmp_path / "first.log"
    with open(first_log, "w") as handle:
        first = subprocess.Popen([CAFFE, "train", "-solver", str(solver_path)], stdout=handle,
                                 stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 300
        # the display of iteration 4 comes after the iteration-3 snapshot was written
        while time.time() < deadline and first.poll() is None:
            if re.search(r"Iteration 4 \(", first_log.read_text()):
                break
            time.sleep(0.2)
        first.kill()
        first.wait()
    first_text = first_log.read_text()
    assert first.returncode == -signal.SIGKILL, first_text[-2000:]
    assert "Optimization Done" not in first_text
    state = "%s_iter_3.solverstate" % prefix
    assert os.path.exists(state) and not os.path.exists("%s_iter_9.caffemodel" % prefix)

    second = subprocess.run([CAFFE, "train", "-solver", str(solver_path), "-snapshot", state],
                            capture_output=True, text=True, env=env, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Resuming from %s" % state in second.stderr
    resumed = caffe_log.parse_text(second.stderr)
    assert [d.iteration for d in resumed.train_displays] == [3, 4, 5, 6, 7, 8, 9]
    assert resumed.finished
    assert resumed.snapshots[-1] == "%s_iter_9.caffemodel" % prefix
    assert os.path.getsize("%s_iter_9.caffemodel" % prefix) > 0


def test_alexnet_dg_learns_at_the_smallest_size_found(tmp_path):
    """AlexNet DG through the committed solver on a 4-class colour-cue stand-in
    (30 train + 5 val images a class), batch 16, 120 iterations: the val loss
    falls by more than the report's margin (5 % of ln 4). Measured here (seed
    1): 1.391 -> 1.178, val accuracy 0.25 -> 0.40 (20 images, too few to
    assert on across machines)."""
    folder = tmp_path / "data"
    settings = smoke.Settings(
        repo=REPO, caffe=CAFFE, runs_dir=str(tmp_path / "runs"), lmdb_dir=str(folder / "lmdb"),
        standin_dir=str(folder / "standin"),
        standin=standin.StandinConfig(classes=4, train_per_class=30, val_per_class=5,
                                      corrupt=0, colour_cue=1.0),
        iterations=120, train_batch=16, test_batch=20, display=10, tests_per_run=4,
        archs=("alexnet",), approaches=("dg",), log=lambda m: None)
    smoke.run_all(settings)
    [result] = smoke_report.collect(settings, imagenet_data.check_data(settings))
    [stage] = result.stages
    assert result.loss_went_down(4), (stage.first_val_loss, stage.last_val_loss)
