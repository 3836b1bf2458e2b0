"""gencaffe.caffe_log on real `caffe train` output.

Fixtures tests/fixtures/caffe_train_lenet_{dg,gg}_short.log: this fork's caffe
(CPU) running solvers/lenet_{dg,gg}.prototxt with max_iter 200,
test_interval 100, test_iter 10; the multi-line prototxt echo dropped (only
glog lines kept) and the snapshot prefix rewritten to runs/fixture/.
"""
import math
import os

import pytest

from gencaffe import caffe_log

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


def fixture_text(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return handle.read()


def test_dg_log_test_passes_train_displays_and_end():
    log = caffe_log.parse_text(fixture_text("caffe_train_lenet_dg_short.log"))
    assert [t.iteration for t in log.tests()] == [0, 100, 200]
    assert log.tests()[1].outputs == {"accuracy": 0.902, "loss": 0.357777}
    assert log.final_test().error_percent == pytest.approx(100 * (1 - 0.904))
    # displays at 0 and 100, plus the "Iteration 200, loss = ..." after the last step
    assert [(d.iteration, d.smoothed_loss) for d in log.train_displays] == \
        [(0, 2.36042), (100, 0.221149), (200, 0.12648)]
    assert log.train_displays[1].outputs == {"loss": 0.221149}
    assert log.learning_rates == [(0, 0.01), (100, 0.00992565)]
    assert log.snapshots == ["runs/fixture/lenet_dg_iter_200.caffemodel"]
    assert log.finished and log.last_iteration == 200


def test_gg_log_has_ess_in_test_and_train_outputs():
    log = caffe_log.parse_text(fixture_text("caffe_train_lenet_gg_short.log"))
    tests = log.tests()
    assert [t.iteration for t in tests] == [0, 100, 200]
    assert set(tests[0].outputs) == {"accuracy", "ess", "loss"}
    assert all(0 < t.outputs["ess"] <= 1 for t in tests)
    assert all("ess" in d.outputs for d in log.train_displays[:2])
    assert log.finished


def test_log_cut_off_mid_run_is_not_finished():
    text = fixture_text("caffe_train_lenet_dg_short.log")
    cut = text[:text.index("Iteration 100, Testing net")]
    cut += "I20261124 09:23:02.682130 12275 solver.cpp:347] Iteration 100, Testing net (#0)\n"
    log = caffe_log.parse_text(cut)
    assert not log.finished
    assert [t.iteration for t in log.tests()] == [0]  # the header without outputs is dropped
    assert log.snapshots == []


def test_numbers_in_all_glog_forms():
    lines = [
        "I0101 00:00:00.000000 1 solver.cpp:347] Iteration 5000, Testing net (#0)",
        "I0101 00:00:00.000000 1 solver.cpp:414]     Test net output #0: accuracy = 1",
        "I0101 00:00:00.000000 1 solver.cpp:414]     Test net output #1: loss = 1.5e-05 (* 1 = 1.5e-05 loss)",
        "I0101 00:00:00.000000 1 solver.cpp:414]     Test net output #2: ess = nan",
        "I0101 00:00:00.000000 1 solver.cpp:347] Iteration 5000, Testing net (#1)",
        "I0101 00:00:00.000000 1 solver.cpp:414]     Test net output #0: accuracy = 0.5",
        "I0101 00:00:00.000000 1 solver.cpp:239] Iteration 5000 (12.5 iter/s, 8s/100 iters), loss = -1.83",
        "I0101 00:00:00.000000 1 solver.cpp:258]     Train net output #0: ess = 0.0731",
    ]
    log = caffe_log.parse_lines(lines)
    first, second = log.tests(0)[0], log.tests(1)[0]
    assert first.outputs["accuracy"] == 1.0 and first.error_percent == 0.0
    assert first.outputs["loss"] == 1.5e-05
    assert math.isnan(first.outputs["ess"])
    assert second.outputs == {"accuracy": 0.5}
    assert log.train_displays[0].smoothed_loss == -1.83
    assert log.train_displays[0].outputs == {"ess": 0.0731}


def test_net_without_accuracy_has_no_error():
    log = caffe_log.parse_lines([
        "I0101 solver.cpp:347] Iteration 0, Testing net (#0)",
        "I0101 solver.cpp:414]     Test net output #0: loss = 2.3 (* 1 = 2.3 loss)"])
    assert log.final_test().error_percent is None
