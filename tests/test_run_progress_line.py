"""The runners' progress line (caffe_runs.CaffeTraining._wait_with_progress):
between test passes it shows the training loss Caffe last displayed, so that a
plateau (ZF at ln 200 = 5.298 on Tiny ImageNet) or a descent is visible, beside
the last test pass's outputs and the ETA."""
import subprocess
import types

from gencaffe.experiments import caffe_runs

LOG = """\
I1205 02:00:00.000000 1 solver.cpp:351] Iteration 0, Testing net (#0)
I1205 02:00:01.000000 1 solver.cpp:418]     Test net output #0: accuracy = 0.005
I1205 02:00:01.000000 1 solver.cpp:418]     Test net output #1: loss = 5.298
I1205 02:00:02.000000 1 solver.cpp:242] Iteration 0 (0 iter/s, 1s/20 iters), loss = 5.2917
I1205 02:01:02.000000 1 solver.cpp:242] Iteration 20 (0.3 iter/s, 60s/20 iters), loss = 5.2452
"""


class FakeProcess:
    """Still running at the first wait, finished at the second."""
    def __init__(self):
        self.waits = 0

    def wait(self, timeout=None):
        self.waits += 1
        if self.waits == 1:
            raise subprocess.TimeoutExpired("caffe", timeout)


def test_progress_shows_the_displayed_training_loss_and_the_last_test(tmp_path):
    log_path = tmp_path / "train.log.partial"
    log_path.write_text(LOG)
    messages = []
    run = types.SimpleNamespace(label="zf DG seed 1 epoch 1/9", max_iter=lambda settings: 240)
    settings = types.SimpleNamespace(progress_every_s=0.01, log=messages.append)
    caffe_runs.CaffeTraining._wait_with_progress(run, FakeProcess(), str(log_path), settings,
                                                 started=0.0)
    assert len(messages) == 1
    line = messages[0]
    assert line.startswith("[zf DG seed 1 epoch 1/9] iter 20/240 (8%), train loss 5.245, ")
    assert "last test accuracy 0.005, loss 5.298" in line


def test_before_the_first_display_the_loss_is_a_dash(tmp_path):
    log_path = tmp_path / "train.log.partial"
    log_path.write_text("I1205 02:00:00.000000 1 net.cpp:100] Setting up conv1\n")
    messages = []
    run = types.SimpleNamespace(label="x", max_iter=lambda settings: 10)
    settings = types.SimpleNamespace(progress_every_s=0.01, log=messages.append)
    caffe_runs.CaffeTraining._wait_with_progress(run, FakeProcess(), str(log_path), settings,
                                                 started=0.0)
    assert "iter 0/10 (0%), train loss -, last test " in messages[0]
