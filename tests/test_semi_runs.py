"""The semi-supervised MNIST runner (tools/reproduce_semi.py, gencaffe.experiments
semi_runs / semi_report / semi_diagnostics) with the real caffe on tiny LMDBs
(300 train images of 28x28, the first 250 split, 100 test images; 12-iteration
budget): the split, the three approaches through the committed solvers with
only the listed overrides, stage 1 reused from semi_gg's snapshot (and that
snapshot equal to a separate stage-1 run's weights), resumability, the report
and the diagnostics checked against Caffe's own loss layer."""
import os
import shutil

import numpy as np
import pytest

pytest.importorskip("caffe", reason="pycaffe not built")
pytest.importorskip("lmdb")

from conftest import BUILD, REPO  # noqa: E402
from gencaffe import solver_config  # noqa: E402
from gencaffe.data import mnist as mnist_data  # noqa: E402
from gencaffe.experiments import semi_diagnostics, semi_report, semi_runs  # noqa: E402

CAFFE = os.path.join(BUILD, "caffe", "tools", "caffe")
OVERRIDDEN = ("net", "max_iter", "test_iter", "test_interval", "display", "snapshot",
              "snapshot_prefix", "random_seed", "solver_mode")


def write_lmdbs(data_dir, train=300, test=100, seed=0):
    """Digit-like toy images: class c lights up row band c (plus noise)."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("test", test)):
        labels = np.arange(count) % 10
        images = rng.integers(0, 60, size=(count, 28, 28), dtype=np.uint8)
        for index, label in enumerate(labels):
            images[index, 2 + 2 * label:4 + 2 * label, 4:24] = 250
        mnist_data.write_datum_lmdb(os.path.join(str(data_dir), "mnist_%s_lmdb" % split),
                                    images, labels)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    root = tmp_path_factory.mktemp("semi")
    for folder in ("solvers",):
        shutil.copytree(os.path.join(REPO, folder), str(root / folder))
    write_lmdbs(root / "data" / "mnist")
    return root


def settings_for(root, **changes):
    values = dict(repo=str(root), caffe=CAFFE, iterations=12, tests_per_run=1, pool=250,
                  display=2, log=lambda m: None, progress_every_s=1e9)
    values.update(changes)
    return semi_runs.Settings(**values)


@pytest.fixture(scope="module")
def finished(sandbox):
    """k = 20 (2 per class), seed 1: every approach trained once."""
    settings = settings_for(sandbox)
    runner = semi_runs.Runner(settings)
    runner.run(20, 1)
    return settings, runner


def test_budget_split_and_snapshot_interval_follow_the_committed_solvers():
    assert semi_runs.stage_split(REPO, 25) == (16, 9)        # 15008 : 8442 = 16 : 9 epochs
    assert semi_runs.stage_split(REPO, 3000) == (1920, 1080)
    assert semi_runs.snapshot_interval(settings_for(REPO, iterations=3000)) == 240
    with pytest.raises(semi_runs.SemiError, match="does not divide"):
        semi_runs.snapshot_interval(settings_for(REPO, iterations=3000, snapshot_every=7))
    with pytest.raises(semi_runs.SemiError, match="at least 2"):
        semi_runs.stage_split(REPO, 1)


def test_every_approach_trains_through_the_committed_solvers(finished):
    settings, runner = finished
    assert runner.trainings_finished == 3                   # dg, semi_gg, stage 2 (stage 1 reused)
    manifest = semi_runs.read_split(settings, 20, 1)
    assert manifest["counts"] == {"labelled": 20, "unlabelled": 230}
    assert manifest["class_counts"]["labelled"] == [2] * 10
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    for approach in semi_runs.APPROACHES:
        for run in semi_runs.approach_runs(settings, 20, 1, approach):
            assert run.is_complete(settings)
            spec = run.spec(settings)
            ours = caffe_pb2.SolverParameter()
            text_format.Merge(spec["solver"], ours)
            template = solver_config.load_solver(settings.path(semi_runs.SOLVERS[run.role]))
            assert (ours.max_iter, list(ours.test_iter), ours.random_seed) == (
                run.iterations, [1], 1)                      # 100 test images / batch 100
            assert ours.net == os.path.join(run.run_dir, semi_runs.NET_NAME)
            for name in OVERRIDDEN:
                ours.ClearField(name)
                template.ClearField(name)
            assert ours == template      # base_lr (0.003 for tuning), momentum, policy as committed
            net = spec["files"][semi_runs.NET_NAME]
            split = semi_runs.split_dir(settings, 20, 1)
            assert 'source: "%s/labelled_lmdb"' % split in net
            assert ("unlabelled_lmdb" in net) == (run.role == "semi_gg")
            assert ("semi_supervised: true" in net) == (run.role == "semi_gg")
    stage1, tune = semi_runs.approach_runs(settings, 20, 1, "semi_gg_dg")
    assert (tune.iteration_offset, tune.iterations) == (8, 4)   # 12 split 16 : 9
    assert tune.weights == stage1.snapshot_path(8)


def test_stage_one_snapshot_equals_a_separate_stage_one_run(finished, sandbox):
    """What lets semi_gg_dg reuse semi_gg's snapshot instead of training stage 1 again."""
    settings, _ = finished
    semi_gg = semi_runs.semi_gg_run(settings, 20, 1)
    alone = semi_runs.SemiRun("stage 1 alone", "runs/stage1_alone", "semi_gg", 20, 1, 8)
    semi_runs.Runner(settings).ensure(alone)
    with open(settings.path(alone.final_snapshot(settings)), "rb") as a, \
            open(settings.path(semi_gg.snapshot_path(8)), "rb") as b:
        assert a.read() == b.read()


def test_finished_work_is_not_redone_and_a_new_split_retrains(finished, sandbox):
    settings, _ = finished
    again = semi_runs.Runner(settings)
    again.run(20, 1)
    assert again.trainings_finished == 0
    other = settings_for(sandbox, balanced=False)             # another subset of 20
    assert not semi_runs.approach_runs(other, 20, 1, "dg")[0].is_complete(other)


def test_report_and_diagnostics(finished, tmp_path):
    settings, _ = finished
    paths = semi_report.ReportPaths.under(str(tmp_path))
    results = semi_report.write_report(settings, [20], [1], list(semi_runs.APPROACHES), paths,
                                       "test", diagnostic_batches=2)
    for approach in semi_runs.APPROACHES:
        result = results[(20, 1, approach)]
        assert result.complete and 0 <= result.error <= 100
    assert results[(20, 1, "semi_gg_dg")].test_curve[-1][0] == 12
    table = open(paths.table).read()
    assert "| 20 |" in table and "12 iterations of a 64-image batch" in table
    assert "could not be checked" in table
    assert os.path.getsize(paths.errors_png) > 0 and os.path.getsize(paths.diagnostics_png) > 0
    diagnostics = results[(20, 1, "semi_gg")].diagnostics
    assert [row["iteration"] for row in diagnostics["snapshots"]] == list(range(1, 13))
    for row in diagnostics["snapshots"]:
        assert 0 <= row["pseudo_accuracy"] <= 1 and abs(sum(row["class_share"]) - 1) < 1e-9
    # cached: a second report reads diagnostics.json instead of recomputing
    path = settings.path(os.path.join(semi_runs.semi_gg_run(settings, 20, 1).run_dir,
                                      semi_diagnostics.DIAGNOSTICS_NAME))
    stamp = os.stat(path).st_mtime_ns
    semi_report.write_report(settings, [20], [1], ["semi_gg"], paths, "test",
                             diagnostic_batches=2)
    assert os.stat(path).st_mtime_ns == stamp


def test_runs_of_other_settings_are_reported_as_stale_not_dropped(finished, sandbox):
    settings, _ = finished
    other = settings_for(sandbox, unlabeled_weight=0.5)      # another lambda: another spec
    result = semi_report.collect_one(other, 20, 1, "semi_gg")
    assert result.complete and result.stale
    assert not semi_report.collect_one(settings, 20, 1, "semi_gg").stale


def test_eq19_recomputation_matches_caffe_and_a_wrong_one_is_caught():
    rng = np.random.default_rng(3)
    scores = rng.normal(size=(12, 4)) * 3
    labels = np.array([0, 1, 2, 3, -1, -1, -1, -1, -1, -1, -1, -1])
    prior = [0.1, 0.2, 0.3, 0.4]
    checker = semi_diagnostics.caffe_loss_net(12, 4, 0.1, prior)
    result = semi_diagnostics.eq19_batch(scores, labels, np.log(prior), 0.1)
    semi_diagnostics.check_against_caffe(checker, scores, labels, result)
    # the arg-max is the batch-normalised score plus log rho, not the raw score
    lse = semi_diagnostics.column_logsumexp(scores)
    expected = np.argmax(scores - lse + np.log(prior), axis=1)
    assert np.array_equal(result["targets"][4:], expected[4:])
    wrong = semi_diagnostics.eq19_batch(scores, labels, np.log([0.25] * 4), 0.1)
    with pytest.raises(semi_diagnostics.DiagnosticsError, match="loss"):
        semi_diagnostics.check_against_caffe(checker, scores, labels, wrong)


def test_bayes_rule_ignores_per_class_offsets_that_gg_cannot_learn():
    """GG's loss is unchanged by a constant added to one class's scores; the
    generative model's Bayes rule (log Z_y from reference images) undoes it."""
    class Net:   # a stand-in with pycaffe's blobs/forward: ip2 = the input's first 3 values
        def __init__(self, offsets):
            self.offsets, self.blobs = offsets, {"data": Blob((4, 1, 1, 3)), "ip2": Blob((4, 3))}

        def forward(self):
            self.blobs["ip2"].data[...] = self.blobs["data"].data.reshape(4, 3) + self.offsets

    class Blob:
        def __init__(self, shape):
            self.data = np.zeros(shape, dtype=np.float32)

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=40)
    images = (np.eye(3)[labels] * 3 + rng.normal(size=(40, 3))).astype(np.float32)
    reference = (np.eye(3)[rng.integers(0, 3, size=60)] * 3 + rng.normal(size=(60, 3)))
    args = (reference.astype(np.float32).reshape(60, 1, 1, 3), images.reshape(40, 1, 1, 3),
            labels, np.log(np.full(3, 1 / 3.)))
    plain = semi_diagnostics.generative_classifier(Net(np.zeros(3)), *args)
    shifted = semi_diagnostics.generative_classifier(Net(np.array([0., 5., -5.])), *args)
    assert shifted["generative_test_accuracy"] == plain["generative_test_accuracy"] > 0.8
    assert shifted["classifier_test_accuracy"] < 0.5 < plain["classifier_test_accuracy"]
