"""The ledger of finished runs (gencaffe.experiments.run_ledger): what defines
a plan, entries written and read back, refusals that name the file, and how
a report chooses between the run on disk and its entry; the runners' choice
of what to train (tiny_imagenet.ledger_plan). Plain objects, no Caffe."""
import json
import os
from types import SimpleNamespace

import pytest

from gencaffe.experiments import run_ledger

pytest.importorskip("caffe.proto.caffe_pb2", reason="the report module reads solvers")
from gencaffe.experiments import tiny_imagenet as tiny  # noqa: E402
from gencaffe.experiments.tiny_imagenet_report import RunResult  # noqa: E402


def chunk(solver, run_dir="runs/t/alexnet/dg/seed1/epoch1", data="fp"):
    return SimpleNamespace(solver=solver, files={"train_val.prototxt": "source: 'data/t/x'"},
                           data_fingerprint=data, run_dir=run_dir)


def finished(top1=80.0, **changes):
    result = RunResult("alexnet", "dg", 1, epochs_done=9, epochs_total=9, top1_error=top1,
                       top5_error=50.0, centre_top1_error=81.0,
                       tests=[(1.0, 0.02, None)], displays=[(0.5, 5.2, "DG")])
    for name, value in changes.items():
        setattr(result, name, value)
    return result


def test_plan_names_folders_but_sees_every_solver_and_data_change():
    one = [chunk("net: 'runs/t/a/epoch1/train_val.prototxt'\nbase_lr: 0.01")]
    moved = [chunk("net: '/elsewhere/a/epoch1/train_val.prototxt'\nbase_lr: 0.01")]
    folders = {"runs/t": "<runs>", "data/t": "<data>"}
    assert run_ledger.plan_sha256(one, folders) == run_ledger.plan_sha256(
        moved, {"/elsewhere": "<runs>", "data/t": "<data>"})
    assert run_ledger.plan_sha256(one, folders) != run_ledger.plan_sha256(moved, folders)
    lr = [chunk("net: 'runs/t/a/epoch1/train_val.prototxt'\nbase_lr: 0.02")]
    assert run_ledger.plan_sha256(one, folders) != run_ledger.plan_sha256(lr, folders)
    other_data = [chunk(one[0].solver, data="other")]
    assert run_ledger.plan_sha256(one, folders) != run_ledger.plan_sha256(other_data, folders)
    # a longer folder inside a shorter one is named first
    nested = {"data/t": "<data>", "data/t/semi": "<splits>"}
    text = [chunk("x", data="fp")]
    text[0].files = {"n": "data/t/semi/50k"}
    other = [chunk("x", data="fp")]
    other[0].files = {"n": "data/t/50k"}
    assert run_ledger.plan_sha256(text, nested) != run_ledger.plan_sha256(other, nested)


def test_entries_round_trip_and_bad_files_are_named(tmp_path):
    ledger = str(tmp_path / "ledger")
    assert run_ledger.load(ledger) == {}
    run_ledger.write(ledger, "alexnet-dg-seed1", "p1", finished(), "runs/x")
    entries = run_ledger.load(ledger)
    back = run_ledger.result_of(entries["alexnet-dg-seed1"], RunResult)
    assert (back.top1_error, back.tests, back.displays, back.source) == \
        (80.0, [[1.0, 0.02, None]], [[0.5, 5.2, "DG"]], "runs/x")
    assert run_ledger.finished(entries, "alexnet-dg-seed1", "p1")
    assert not run_ledger.finished(entries, "alexnet-dg-seed1", "p2")
    assert not run_ledger.finished(entries, "alexnet-gg-seed1", "p1")
    # no temporary file left beside the entry
    assert os.listdir(ledger) == ["alexnet-dg-seed1.json"]
    bad = tmp_path / "ledger" / "alexnet-gg-seed1.json"
    bad.write_text("{not json")
    with pytest.raises(run_ledger.LedgerError, match="alexnet-gg-seed1.json"):
        run_ledger.load(ledger)
    bad.write_text(json.dumps({"format": 1, "key": "zf-gg-seed1", "plan_sha256": "p",
                               "result": {}}))
    with pytest.raises(run_ledger.LedgerError, match="key 'alexnet-gg-seed1'"):
        run_ledger.load(ledger)
    bad.write_text(json.dumps({"format": 1, "key": "alexnet-gg-seed1", "plan_sha256": "p",
                               "result": {"arch": "a", "approach": "gg", "seed": 1,
                                          "loss_scale": 2}}))
    with pytest.raises(run_ledger.LedgerError, match="unknown fields"):
        run_ledger.result_of(run_ledger.load(ledger)["alexnet-gg-seed1"], RunResult)


def reconcile(ledger, entries, on_disk, plan="p1", logged=None):
    return run_ledger.reconcile(ledger, entries, "alexnet-dg-seed1", plan, on_disk, "runs/x",
                                (logged if logged is not None else []).append, RunResult)


def test_a_finished_run_on_disk_is_recorded_and_its_entry_stands_in_when_it_is_gone(tmp_path):
    ledger = str(tmp_path / "ledger")
    entries = {}
    assert reconcile(ledger, entries, finished()).source is None   # the disk's own
    assert run_ledger.load(ledger)["alexnet-dg-seed1"]["result"]["top1_error"] == 80.0
    gone = RunResult("alexnet", "dg", 1, epochs_total=9)
    back = reconcile(ledger, run_ledger.load(ledger), gone)
    assert back.top1_error == 80.0 and back.source == "runs/x"
    # a run in progress on disk (a rerun) does not hide the finished entry
    partial = RunResult("alexnet", "dg", 1, epochs_done=3, epochs_total=9)
    assert reconcile(ledger, run_ledger.load(ledger), partial).top1_error == 80.0
    # another plan: the entry is stale, the disk's state is reported, and said so
    logged = []
    assert reconcile(ledger, run_ledger.load(ledger), gone, plan="p2", logged=logged) is gone
    assert "another plan" in logged[0]
    # a plan that cannot be computed here (a split not on this disk): the entry as recorded
    assert reconcile(ledger, run_ledger.load(ledger), gone, plan=None).top1_error == 80.0
    # a finished run of another plan replaces the entry, with a warning
    logged = []
    reconcile(ledger, run_ledger.load(ledger), finished(70.0), plan="p2", logged=logged)
    assert "another plan" in logged[0] and "replaced" in logged[0]
    assert run_ledger.load(ledger)["alexnet-dg-seed1"]["plan_sha256"] == "p2"


def test_a_rerun_that_differs_replaces_the_entry_and_says_so(tmp_path):
    ledger = str(tmp_path / "ledger")
    reconcile(ledger, {}, finished(80.0))
    stamp = run_ledger.load(ledger)["alexnet-dg-seed1"]["recorded"]
    logged = []
    reconcile(ledger, run_ledger.load(ledger), finished(80.0), logged=logged)
    assert logged == [] and run_ledger.load(ledger)["alexnet-dg-seed1"]["recorded"] == stamp
    reconcile(ledger, run_ledger.load(ledger), finished(81.5), logged=logged)
    assert "differs" in logged[0] and "81.50" in logged[0]
    assert run_ledger.load(ledger)["alexnet-dg-seed1"]["result"]["top1_error"] == 81.5


def test_diagnostics_not_yet_computed_are_kept_from_the_entry(tmp_path):
    ledger = str(tmp_path / "ledger")
    reconcile(ledger, {}, finished(diagnostics={"snapshots": [{"ess": 0.5}]}))
    again = reconcile(ledger, run_ledger.load(ledger), finished(diagnostics=None))
    assert again.diagnostics == {"snapshots": [{"ess": 0.5}]}
    assert run_ledger.load(ledger)["alexnet-dg-seed1"]["result"]["diagnostics"] == \
        {"snapshots": [{"ess": 0.5}]}


def test_ledger_plan_leaves_out_finished_runs_but_trains_a_pending_stage_2s_start(tmp_path):
    ledger = str(tmp_path / "ledger")
    settings = SimpleNamespace(ledger_dir=ledger, runs_dir="runs/t", lmdb_dir="data/t")
    gg = [chunk("gg epoch %d" % e, run_dir="gg/epoch%d" % e) for e in (1, 2, 3)]
    gg_dg = [chunk("stage 2", run_dir="gg_dg/epoch3")]
    dg = [chunk("dg epoch %d" % e, run_dir="dg/epoch%d" % e) for e in (1, 2, 3)]
    runs = {("alexnet", "gg", 1): gg, ("alexnet", "gg_dg", 1): gg_dg, ("alexnet", "dg", 1): dg}
    full = {("alexnet", "gg", 1): gg, ("alexnet", "gg_dg", 1): gg[:2] + gg_dg,
            ("alexnet", "dg", 1): dg}
    folders = tiny.plan_folders(settings)
    for key in (("alexnet", "gg", 1), ("alexnet", "dg", 1)):
        run_ledger.write(ledger, tiny.run_key(*key), run_ledger.plan_sha256(full[key], folders),
                         finished(), "runs/x")
    stage1 = (lambda k: (k[0], tiny.STAGE1_OF[k[1]], k[2]) if k[1] in tiny.STAGE1_OF else None)
    done, needs = tiny.ledger_plan(settings, runs, full.__getitem__, lambda k: tiny.run_key(*k),
                                   stage1)
    assert done == {("alexnet", "gg", 1), ("alexnet", "dg", 1)}
    assert needs == {("alexnet", "gg_dg", 1): gg[:2]}
    # an entry made for another solver does not count
    dg[0].solver = "dg epoch 1, base_lr changed"
    done, _ = tiny.ledger_plan(settings, runs, full.__getitem__, lambda k: tiny.run_key(*k),
                               stage1)
    assert done == {("alexnet", "gg", 1)}
