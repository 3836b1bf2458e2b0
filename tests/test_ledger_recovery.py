"""Ledger records read back from a Tiny ImageNet report
(gencaffe.experiments.ledger_recovery): reports written by the report code
itself from known records, then recovered, give those records back to the
report's precision; rows that mix seeds are refused."""
from types import SimpleNamespace

import pytest

pytest.importorskip("caffe.proto.caffe_pb2", reason="the report modules read solvers")
from gencaffe.experiments import ledger_recovery as recovery  # noqa: E402
from gencaffe.experiments import tiny_imagenet as tiny  # noqa: E402
from gencaffe.experiments import tiny_imagenet_report as report  # noqa: E402
from gencaffe.experiments import tiny_imagenet_semi_report as semi_report  # noqa: E402

DATA = SimpleNamespace(lmdb_dir="data/t", classes=200, train_count=60000, val_count=10000)
SCHED = tiny.Schedule(epochs=9, switch=6, iters_per_epoch=240, stepsize=4800, exact_epochs=True)


def settings(**extra):
    return SimpleNamespace(runs_dir="runs/t", gpu=None, threads_per_job=1, ledger_dir=None,
                           repo="/r", **extra)


def record(group, approach, seed, top1, errors, minutes, own_epochs, total=9):
    return report.RunResult(group, approach, seed, epochs_done=len(errors), epochs_total=total,
                            epoch_seconds=[60.0 * minutes] * own_epochs,
                            tests=[(0.0, 0.005, 0.025)] + [(float(e + 1), 1 - err / 100, None)
                                                           for e, err in enumerate(errors)],
                            centre_top1_error=errors[-1] if errors and len(errors) == total
                            else None,
                            top1_error=top1, top5_error=None if top1 is None else top1 - 21.5)


def errors(start, step, n=9):
    return [round(start - step * e, 3) for e in range(n)]


def test_table2_records_come_back_from_their_report(monkeypatch):
    monkeypatch.setattr(tiny, "batches", lambda arch, data, settings: (250, 50))
    results = []
    for arch, base in (("alexnet", 99.0), ("zf", 98.7)):
        for approach, top1, minutes in (("dg", 83.55, 17.3), ("gg", 85.49, 17.25),
                                        ("gg_dg", 81.8, 13.3), ("control", 84.41, 13.26)):
            own = 3 if approach in tiny.STAGE1_OF else 9
            results.append(record(arch, approach, 1, top1 - (base - 99), errors(base, 1.7),
                                  minutes, own))
        results.append(record(arch, "dg", 2, None, [], 17.0, 0))   # seed 2 not started
    text = report.table_markdown(settings(), DATA, {"alexnet": SCHED, "zf": SCHED}, results,
                                 "python3 tools/reproduce_tiny_imagenet.py")
    back = recovery.recover_table2(text, seed=1)
    assert sorted(back) == sorted(tiny.run_key(r.arch, r.approach, 1) for r in results
                                  if r.seed == 1)
    for r in results:
        if r.seed != 1:
            continue
        got = back[tiny.run_key(r.arch, r.approach, 1)]
        assert got.top1_error == pytest.approx(r.top1_error, abs=0.005)
        assert got.top5_error == pytest.approx(r.top5_error, abs=0.005)
        assert got.centre_top1_error == pytest.approx(r.centre_top1_error, abs=0.005)
        assert report.epoch_errors(got) == pytest.approx(report.epoch_errors(r), abs=0.05)
        assert len(got.epoch_seconds) == len(r.epoch_seconds)
        assert got.epoch_seconds[0] / 60 == pytest.approx(r.epoch_seconds[0] / 60, abs=0.051)
        assert got.displays == [] and got.epochs_done == 9
    # the report written from the recovered records says the same
    again = report.table_markdown(settings(), DATA, {"alexnet": SCHED, "zf": SCHED},
                                  list(back.values()), "x")
    for line in text.splitlines():
        if line.startswith("* AlexNet, GG+DG beats DG") or line.startswith("| ZF-net | GG+DG - "):
            assert line in again.splitlines()
    # seed 2 has nothing to give
    assert recovery.recover_table2(text, seed=2) == {}


def test_table2_rows_that_mix_seeds_are_refused(monkeypatch):
    monkeypatch.setattr(tiny, "batches", lambda arch, data, settings: (250, 50))
    results = [record("alexnet", "dg", 1, 83.0, errors(99, 1.5), 17.0, 9),
               record("alexnet", "dg", 2, None, [99.0, 98.0], 17.0, 2)]
    text = report.table_markdown(settings(), DATA, {"alexnet": SCHED}, results, "x")
    with pytest.raises(recovery.RecoveryError, match="seeds \\[2\\] also trained"):
        recovery.recover_table2(text, seed=1)


def test_table3_records_and_semi_gg_diagnostics_come_back(monkeypatch):
    monkeypatch.setattr(tiny, "batches", lambda arch, data, settings: (250, 50))
    results = []
    for fraction, shift in (("50k", 0.0), ("300k", 10.0)):
        results.append(record(fraction, "dg", 1, 96.3 - shift, errors(98.4, 0.2 + shift / 40),
                              14.4, 9))
        gg = record(fraction, "semi_gg", 1, 99.5, [99.5] * 6, 13.4, 6, total=6)
        gg.diagnostics = {
            "labelled_batch": 10, "unlabelled_batch": 240, "unlabeled_weight": 0.1,
            "snapshots": [dict(iteration=240 * e, pseudo_accuracy=0.005 + 0.001 * e,
                               classifier_accuracy=0.004, agreement=0.063,
                               largest_class_share=0.39 + 0.01 * e, class_entropy=0.3,
                               ess=0.6, labelled_term=-0.18 + 0.04 * e, unlabelled_term=-4.4,
                               class_share=[0.5] + [0.5 / 199] * 199)
                          for e in range(1, 7)],
            "final": {"classifier_test_accuracy": 0.005, "generative_test_accuracy": 0.0082}}
        gg.class_prior = [0.02] + [0.98 / 199] * 199
        results.append(gg)
        results.append(record(fraction, "semi_gg_dg", 1, 98.99 - shift,
                              [99.5] * 6 + [99.5, 99.2, 99.0 - shift], 16.1, 3))
    semi_settings = settings(unlabeled_weight=None, uniform_prior=False, labelled_share=None,
                             balanced=False)
    text = semi_report.table_markdown(semi_settings, DATA, SCHED, results, "x")
    back = recovery.recover_table3(text, seed=1)
    assert sorted(back) == sorted("%s-seed1-%s" % (r.arch, r.approach) for r in results)
    for r in results:
        got = back["%s-seed1-%s" % (r.arch, r.approach)]
        assert (got.top1_error, got.epochs_total) == (pytest.approx(r.top1_error, abs=0.005),
                                                      r.epochs_total)
        assert report.epoch_errors(got) == pytest.approx(report.epoch_errors(r), abs=0.05)
    gg = back["50k-seed1-semi_gg"].diagnostics
    assert (gg["labelled_batch"], gg["unlabelled_batch"], gg["unlabeled_weight"]) == (10, 240, 0.1)
    assert [row["iteration"] for row in gg["snapshots"]] == [240 * e for e in range(1, 7)]
    assert gg["snapshots"][-1]["largest_class_share"] == pytest.approx(0.45, abs=5e-4)
    assert gg["snapshots"][-1]["favoured_prior_ranks"] == [1, 2, 2, 2, 2]   # as printed
    assert gg["final"]["generative_test_accuracy"] == pytest.approx(0.0082, abs=5e-5)
    # the reading of the recovered semi GG run says what the original said
    again = semi_report.table_markdown(semi_settings, DATA, SCHED, list(back.values()), "x")
    said = [line for line in text.splitlines() if "unlabelled term spreads" in line]
    assert said and all(line in again.splitlines() for line in said)


def test_the_tool_names_what_it_cannot_recover():
    import os
    import subprocess
    import sys
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    tool = [sys.executable, os.path.join(repo, "tools", "recover_ledger.py")]
    if subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True).returncode:
        pytest.skip("not a git checkout")
    missing = subprocess.run(tool + ["table2", "--report-commit", "0" * 40], cwd=repo,
                             capture_output=True, text=True)
    assert missing.returncode != 0 and "git show %s:results/tiny_imagenet.md" % ("0" * 40) \
        in missing.stderr
    empty = subprocess.run(tool + ["table2", "--report-commit", "HEAD", "--seed", "99"],
                           cwd=repo, capture_output=True, text=True)
    assert empty.returncode == 2 and "no finished run of seed 99" in empty.stdout
