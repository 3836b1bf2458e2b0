"""The Tiny ImageNet report's reading of finished runs
(gencaffe.experiments.tiny_imagenet_report): per-epoch errors from the test
passes, paired differences, and the statements against the paper's claims;
plain RunResult objects, no Caffe."""
from types import SimpleNamespace

import pytest

pytest.importorskip("caffe.proto.caffe_pb2", reason="the report module reads solvers")
from gencaffe.experiments import tiny_imagenet_report as report  # noqa: E402


def finished(approach, seed, top1, arch="alexnet"):
    return report.RunResult(arch, approach, seed, epochs_done=9, epochs_total=9,
                            top1_error=top1, top5_error=top1 - 20)


def test_epoch_errors_take_the_test_pass_at_each_epochs_end():
    run = report.RunResult("alexnet", "dg", 1, epochs_done=3, epochs_total=9)
    # a test at iteration 0 (x = 0), the ends of epochs 1 and 3, one mid-epoch
    run.tests = [(0.0, 0.005, 0.025), (1.0, 0.011, 0.05), (1.5, 0.5, 0.6), (3.0, 0.033, 0.1)]
    errors = report.epoch_errors(run)
    assert errors[0] == pytest.approx(98.9) and errors[1] is None
    assert errors[2] == pytest.approx(96.7) and len(errors) == 3


class FakeChunk:
    """What read_chunks asks of a runner's epoch chunk: done, and its log."""

    def __init__(self, epoch, first_iter, approach, log_text):
        from gencaffe import caffe_log
        self.epoch, self.first_iter, self.approach = epoch, first_iter, approach
        self.log = caffe_log.parse_text(log_text)

    def read_done(self, settings):
        return {"seconds": 60.0}

    def is_complete(self, settings):
        return True

    def parsed_log(self, settings):
        return self.log


def display_lines(iteration, loss, ess=None):
    lines = ["I1205 solver.cpp:239] Iteration %d (1 iter/s, 2s/2 iters), loss = %g"
             % (iteration, loss)]
    if ess is not None:
        lines.append("I1205 solver.cpp:258]     Train net output #0: ess = %g" % ess)
    return "\n".join(lines) + "\n"


def test_read_chunks_takes_the_ess_top_beside_the_loss(monkeypatch):
    """A GenerativeLoss chunk's ESS top becomes "ESS" displays at the same
    epoch x as its loss; a DG chunk's log has none and adds none."""
    monkeypatch.setattr(report.tiny, "read_eval", lambda settings, chunk: None)
    gg = [FakeChunk(1, 0, "gg", display_lines(0, 0.01, 0.99) + display_lines(2, -0.1, 0.7)),
          FakeChunk(2, 4, "gg", display_lines(4, -0.2, 0.5))]
    result = report.RunResult("alexnet", "gg", 1, epochs_total=2)
    report.read_chunks(None, result, gg, iters_per_epoch=4, objective_of=lambda c: "GG")
    assert result.displays == [(0.0, 0.01, "GG"), (0.5, -0.1, "GG"), (0.0, 0.99, "ESS"),
                               (0.5, 0.7, "ESS"), (1.0, -0.2, "GG"), (1.0, 0.5, "ESS")]
    dg = report.RunResult("alexnet", "dg", 1, epochs_total=1)
    report.read_chunks(None, dg, [FakeChunk(1, 0, "dg", display_lines(0, 5.3))], 4,
                       objective_of=lambda c: "DG")
    assert dg.displays == [(0.0, 5.3, "DG")]


def test_paired_differences_use_only_seeds_where_both_finished():
    results = [finished("dg", 1, 80.0), finished("dg", 2, 82.0),
               finished("gg_dg", 1, 79.0), finished("gg_dg", 3, 70.0),
               report.RunResult("alexnet", "gg_dg", 2, epochs_done=7, epochs_total=9)]
    seeds, diffs = report.paired(results, "alexnet", "gg_dg", "dg")
    assert seeds == [1] and diffs == [pytest.approx(-1.0)]


def test_reading_says_yes_only_when_every_seed_agrees_and_no_when_the_mean_disagrees():
    results = [finished("dg", s, e) for s, e in ((1, 80.0), (2, 81.0), (3, 82.0))]
    results += [finished("gg", s, e) for s, e in ((1, 85.0), (2, 86.0), (3, 84.0))]
    results += [finished("gg_dg", s, e) for s, e in ((1, 79.0), (2, 81.5), (3, 81.0))]
    results += [finished("control", s, e) for s, e in ((1, 78.0), (2, 80.0), (3, 81.0))]
    text = "\n".join(report.reading(results, ["alexnet"], classes=200, val_count=10000))
    assert "below chance (99.5 %) by more than 5 standard errors of guessing on 10000 " \
           "val images (99.15 %)? yes (the highest: GG seed 2, 86.00 %)" in text
    assert "GG alone is worse than DG? yes, in every seed: GG - DG = +4.00 ± 1.73 pp over 3 " \
           "seed(s) (s1 +5.00, s2 +5.00, s3 +2.00); paper, full ImageNet: +5.1." in text
    # GG+DG - DG: -1, +0.5, -1: on average only
    assert "GG+DG beats DG? on average, not in every seed: GG+DG - DG = -0.50" in text
    # GG+DG - control: +1, +1.5, 0: the mean disagrees
    assert "GG+DG beats the DG run restarted the same way? **no**: GG+DG - DG restarted " \
           "(control) = +0.83" in text
    assert "the restart alone changes DG's error? -1.33 pp" in text


def test_reading_flags_a_run_that_did_not_learn_and_skips_unfinished_nets():
    results = [finished("dg", 1, 60.0), finished("gg", 1, 99.4),
               report.RunResult("zf", "dg", 1, epochs_done=2, epochs_total=9)]
    text = "\n".join(report.reading(results, ["alexnet", "zf"], classes=200, val_count=10000))
    assert "(99.15 %)? **no** (the highest: GG seed 1, 99.40 %)" in text
    assert "ZF" not in text


def curves(approach, displays, tests, arch="50k"):
    return report.RunResult(arch, approach, 1, displays=displays, tests=tests)


def test_semi_curves_put_each_loss_on_its_own_axes_and_stage_one_once(tmp_path):
    """Semi GG's Eq. 19 loss (near 0), DG's softmax loss (near ln 200) and
    the ESS top do not share axes; the tuning stage is drawn from the switch
    on only."""
    pytest.importorskip("matplotlib")
    from gencaffe.experiments import plots
    from gencaffe.experiments import tiny_imagenet_semi as semi
    dg = curves("dg", [(0.5, 5.3, "DG"), (8.5, 4.0, "DG")], [(1, 0.01, None), (9, 0.1, None)])
    semi_gg = curves("semi_gg", [(0.5, 0.45, "GG"), (0.5, 0.99, "ESS"), (5.5, 0.2, "GG"),
                                 (5.5, 0.08, "ESS")],
                     [(1, 0.01, None), (6, 0.08, None)])
    # semi GG + DG tuning carries the semi GG run's first 6 epochs in front
    tuned = curves("semi_gg_dg", semi_gg.displays + [(6.5, 4.2, "DG"), (8.5, 3.9, "DG")],
                   semi_gg.tests + [(7, 0.12, None), (9, 0.15, None)])
    row = plots.EpochRow("50k labels", 9, 6,
                         [("dg", dg, -1), ("semi_gg", semi_gg, -1), ("semi_gg_dg", tuned, 6)])
    fig = plots.epoch_curves_figure(
        [row], [("DG", "DG loss", (5.3, "chance"), "batch loss"),
                ("GG", "semi GG loss", None, "batch loss"), ("ESS", "ESS top", None, "ESS")],
        {"dg": "b", "semi_gg": "r", "semi_gg_dg": "g"}, semi.TITLES, 200, "switch")
    ax_dg, ax_gg, ax_ess, ax_acc = fig.axes

    def drawn(ax):   # label -> x values of the data lines (not the reference lines)
        return {line.get_label(): list(line.get_xdata()) for line in ax.lines
                if len(line.get_xdata()) > 0 and line.get_linestyle() == "-"}

    assert drawn(ax_dg) == {semi.TITLES["dg"]: [0.5, 8.5], semi.TITLES["semi_gg_dg"]: [6.5, 8.5]}
    assert drawn(ax_gg) == {semi.TITLES["semi_gg"]: [0.5, 5.5]}
    assert [list(line.get_ydata()) for line in ax_ess.lines
            if line.get_linestyle() == "-"] == [[0.99, 0.08]]
    assert ax_ess.get_ylabel() == "ESS" and ax_dg.get_ylabel() == "batch loss"
    assert drawn(ax_acc) == {semi.TITLES["dg"]: [1, 9], semi.TITLES["semi_gg"]: [1, 6],
                             semi.TITLES["semi_gg_dg"]: [7, 9]}
    plots.save_png(fig, str(tmp_path / "curves.png"))
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


SCHEDULE = SimpleNamespace(epochs=9, switch=6)   # the committed Table 3 schedule's shape


def semi_diagnostics_of(largest_share, pseudo=0.008, labelled_term=0.06):
    return {"labelled_batch": 10, "unlabelled_batch": 240, "unlabeled_weight": 0.1,
            "snapshots": [{"iteration": 1440, "largest_class_share": largest_share,
                           "class_entropy": 0.23, "pseudo_accuracy": pseudo,
                           "labelled_term": labelled_term}],
            "final": {"generative_test_accuracy": 0.0082}}


def test_semi_reading_names_a_collapsed_unlabelled_term_and_the_weight_of_its_sum():
    from gencaffe.experiments import tiny_imagenet_semi_report as semi_report
    dg = finished("dg", 1, 96.0, arch="50k")
    tuned = finished("semi_gg_dg", 1, 95.0, arch="50k")
    alone = finished("semi_gg", 1, 99.5, arch="50k")     # its arg-max at chance: not "learning"
    alone.diagnostics = semi_diagnostics_of(0.478)
    lines = semi_report.reading([dg, tuned, alone], ["50k"], 200, 10000, SCHEDULE)
    text = "\n".join(lines)
    # 96 % error is 3.5 points from chance, but 50 standard errors of guessing on 10,000 images
    assert "learning: every finished DG and semi GG + DG tuning run's 5-crop top-1 error below " \
           "chance (99.5 %) by more than 5 standard errors of guessing on 10000 val images " \
           "(99.15 %)? yes (the highest: DG, labelled subset only seed 1, 96.00 %)" in text
    assert "semi GG + DG tuning beats DG? yes, in every seed" in text
    assert "= -1.00 pp over 1 seed(s) (s1 -1.00); paper, full ImageNet: -3.0" in text
    assert "spreads over the classes? **no**, it collapses: at its last snapshot it gives " \
           "47.8 % of the unlabelled images to one class (even: 0.5 %" in text
    # 0.1 x 240 = 24 against 10 labelled: 71 % of the batch's loss
    assert "weighs lambda x 240 = 24.0 against 10 labelled images (71 % of the loss)" in text
    assert "Bayes rule: 99.18 % top-1 error" in text

    assert "ranked by rho" not in text                   # no prior given: nothing to rank

    # the term's favourite classes against rho: class 2 has the largest prior
    alone.diagnostics["snapshots"][0]["class_share"] = [0.1, 0.0, 0.6, 0.3]
    alone.class_prior = [0.2, 0.2, 0.4, 0.2]
    text = "\n".join(semi_report.reading([alone], ["50k"], 200, 10000, SCHEDULE))
    assert "the classes it gives the most, ranked by rho (1 = the labelled subset's most " \
           "frequent class, of 200): 1, 2, 2." in text

    alone.diagnostics = semi_diagnostics_of(0.02)         # 4x even: not collapsed
    assert "spreads over the classes? yes:" in "\n".join(
        semi_report.reading([alone], ["50k"], 200, 10000, SCHEDULE))


def test_semi_reading_says_no_when_tuning_loses_and_nothing_before_runs_finish():
    from gencaffe.experiments import tiny_imagenet_semi_report as semi_report
    runs = [finished("dg", s, 90.0, arch="300k") for s in (1, 2)] + \
        [finished("semi_gg_dg", 1, 89.0, arch="300k"), finished("semi_gg_dg", 2, 92.0, arch="300k")]
    text = "\n".join(semi_report.reading(runs, ["300k"], 200, 10000, SCHEDULE))
    assert "semi GG + DG tuning beats DG? **no**: semi-supervised GG + DG tuning - DG, " \
           "labelled subset only = +0.50 ± 2.12 pp over 2 seed(s) (s1 -1.00, s2 +2.00); " \
           "paper, full ImageNet: -3.6" in text
    unfinished = report.RunResult("300k", "dg", 1, epochs_done=3, epochs_total=9)
    assert semi_report.reading([unfinished], ["300k"], 200, 10000, SCHEDULE) == []


def test_prior_ranks_rank_the_most_chosen_classes_by_rho():
    from gencaffe.experiments.tiny_imagenet_semi_report import prior_ranks
    prior = [0.1, 0.3, 0.2, 0.4]                       # ranks 4, 2, 3, 1
    assert prior_ranks([0.5, 0.2, 0.0, 0.3], prior) == [4, 1, 2]   # an unchosen class left out
    assert prior_ranks([0.5, 0.2, 0.0, 0.3], prior, top=1) == [4]
    assert prior_ranks([0.5, 0.5, 0, 0], [0.25] * 4) == []        # uniform: no ranking
    assert prior_ranks([0.5, 0.5, 0, 0], None) == []


def with_epoch_tests(run, errors):
    """run with a centre-crop test pass at the end of each epoch (error %)."""
    run.tests = [(float(e), 1 - err / 100.0, None) for e, err in enumerate(errors, 1)]
    return run


def test_semi_reading_compares_the_tuning_with_dgs_first_epochs_from_random_weights():
    """Semi GG + DG tuning after its 3 DG epochs against DG from random
    weights after its own first 3: is semi GG's start worth more than none?"""
    from gencaffe.experiments import tiny_imagenet_semi_report as semi_report
    dg = [with_epoch_tests(finished("dg", s, 96.0, arch="50k"),
                           [98.4, 97.1, first3] + [96.5] * 6)
          for s, first3 in ((1, 97.0), (2, 97.5))]
    tuned = [with_epoch_tests(finished("semi_gg_dg", s, 98.9, arch="50k"),
                              [99.5] * 6 + [99.5, 99.2, last]) for s, last in ((1, 99.0), (2, 97.0))]
    seeds, diffs = semi_report.start_differences(dg + tuned, "50k", SCHEDULE)
    assert seeds == [1, 2] and diffs == [pytest.approx(2.0), pytest.approx(-0.5)]
    text = "\n".join(semi_report.reading(dg + tuned, ["50k"], 200, 10000, SCHEDULE))
    assert "semi GG's weights a better start for DG than random weights (centre crop, after 3 " \
           "epochs of DG each)? on average, not in every seed" not in text     # mean +0.75: no
    assert "semi GG's weights a better start for DG than random weights (centre crop, after 3 " \
           "epochs of DG each)? **no**: DG tuning from semi GG (base_lr 0.003) - DG from " \
           "random weights after its first 3 epochs (base_lr 0.01) = +0.75 ± 1.77 pp over 2 " \
           "seed(s) (s1 +2.00, s2 -0.50)." in text
    # an unfinished tuning, or a DG without its epoch-3 test, gives no line
    tuned[1].top1_error = None          # not evaluated: not finished
    dg[0].tests = dg[0].tests[:2]
    assert semi_report.start_differences(dg + tuned, "50k", SCHEDULE) == ([], [])


def test_cost_counts_each_runs_own_epochs_once_and_names_the_flags_that_train_it():
    dg = report.RunResult("alexnet", "dg", 2, epochs_done=9, epochs_total=9,
                          epoch_seconds=[600.0] * 9, eval_seconds=300.0, top1_error=80.0)
    # stage 2 only: its stage 1 is the GG run's, counted there
    gg_dg = report.RunResult("alexnet", "gg_dg", 2, epochs_done=9, epochs_total=9,
                             epoch_seconds=[720.0] * 3, eval_seconds=None, top1_error=79.0)
    pending = report.RunResult("alexnet", "gg", 3, epochs_total=9)
    lines = report.cost_markdown([dg, gg_dg, pending],
                                 lambda r: "%s seed %d" % (r.approach, r.seed),
                                 lambda r: "--approaches %s" % r.approach, "GG+DG")
    rows = [line for line in lines if line.startswith("| g") or line.startswith("| d")]
    assert rows == ["| dg seed 2 | 9 | 1.50 | 10.0 | 5.0 | `--approaches dg` |",
                    "| gg_dg seed 2 | 3 | 0.60 | 12.0 | - | `--approaches gg_dg` |",
                    "| gg seed 3 | 0 | - | - | - | `--approaches gg` |"]
    assert "2.1 h of training and 0.1 h of evaluation, 2.2 h" in lines[-1]
