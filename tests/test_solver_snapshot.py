"""caffe train with a snapshot_prefix whose directory does not exist yet: the
solver creates it (caffe/patches/solver-snapshot-directory.patch) instead of
training to the end and dying at the final snapshot; an unwritable prefix
fails at start with a message."""
import os
import subprocess

from conftest import BUILD

CAFFE = os.path.join(BUILD, "caffe", "tools", "caffe")
NET = """
layer { name: "data" type: "DummyData" top: "data" top: "label"
  dummy_data_param { shape { dim: 8 dim: 3 } shape { dim: 8 }
    data_filler { type: "gaussian" } data_filler { type: "constant" value: 1 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "loss" type: "GenerativeLoss" bottom: "ip" bottom: "label" top: "loss" }
"""


def train(tmp_path, prefix):
    (tmp_path / "net.prototxt").write_text(NET)
    (tmp_path / "solver.prototxt").write_text(
        f'net: "{tmp_path / "net.prototxt"}"\nbase_lr: 0.01\nmax_iter: 2\n'
        f'lr_policy: "fixed"\nsolver_mode: CPU\nsnapshot_prefix: "{prefix}"\n')
    return subprocess.run([CAFFE, "train", "-solver", str(tmp_path / "solver.prototxt")],
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, GLOG_minloglevel="0", GLOG_logtostderr="1"))


def test_missing_snapshot_directory_is_created(tmp_path):
    prefix = tmp_path / "not" / "yet" / "there" / "model"
    proc = train(tmp_path, prefix)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "not" / "yet" / "there" / "model_iter_2.caffemodel").exists()


def test_unwritable_snapshot_prefix_fails_before_training(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    proc = train(tmp_path, blocker / "model")
    assert proc.returncode != 0
    assert "Cannot write to snapshot prefix" in proc.stderr
    assert "Iteration 0" not in proc.stderr  # it stopped before training
