"""`caffe train|test|time` flags for the GPU settings
(caffe/patches/gpu-math-and-cudnn-search.patch): a bad value stops with a
message naming the flag and what it takes, and for train the flags given win
over the solver's own fields, the others keep the solver's. Their effect on a
GPU is measured by scripts/gpu_checks.sh (tools/bench_nets.py --settings);
the rules of the algorithm choice are gtests (test_cudnn_port.cpp,
test_gpu_settings.cpp)."""
import os
import subprocess

import pytest

from conftest import BUILD

CAFFE = os.path.join(BUILD, "caffe", "tools", "caffe")

NET = """
name: "tiny"
layer { name: "data" type: "DummyData" top: "data" top: "label"
        dummy_data_param { shape { dim: 4 dim: 3 } shape { dim: 4 }
          data_filler { type: "constant" value: 0.5 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: 2 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"""


@pytest.fixture
def tiny(tmp_path):
    if not os.path.exists(CAFFE):
        pytest.skip("needs the caffe binary (make)")
    (tmp_path / "net.prototxt").write_text(NET)
    (tmp_path / "solver.prototxt").write_text(
        'net: "net.prototxt"\nbase_lr: 0.01\nmax_iter: 1\nlr_policy: "fixed"\n'
        'snapshot_after_train: false\nsolver_mode: CPU\n'
        'gpu_math: FP32\ncudnn_workspace_limit_mb: 16\n')
    return tmp_path


def caffe(folder, *args):
    env = dict(os.environ, GLOG_logtostderr="1", GLOG_minloglevel="0")
    return subprocess.run([CAFFE] + list(args), cwd=folder, capture_output=True, text=True,
                          timeout=120, env=env)


@pytest.mark.parametrize("flag,value,message", [
    ("-gpu_math", "fp16", "-gpu_math: expected fp32 or tf32, got 'fp16'"),
    ("-cudnn_search", "fastest", "-cudnn_search: expected heuristic or measured, got 'fastest'"),
    ("-cudnn_workspace_mb", "-5", "-cudnn_workspace_mb: expected MiB >= 0, got -5"),
])
def test_a_bad_value_names_the_flag(tiny, flag, value, message):
    for command in (["time", "-model", "net.prototxt", "-iterations", "1"],
                    ["train", "-solver", "solver.prototxt"]):
        result = caffe(tiny, *(command + [flag, value]))
        assert result.returncode != 0
        assert message in result.stderr


def solver_dump(stderr):
    """The parameters Solver::Init logs ('Initializing solver from parameters')."""
    start = stderr.index("Initializing solver from parameters")
    return stderr[start:stderr.index("Creating training net", start)]


def test_train_flags_override_the_solvers_fields(tiny):
    result = caffe(tiny, "train", "-solver", "solver.prototxt", "-gpu_math", "TF32",
                   "-cudnn_search", "measured", "-cudnn_deterministic")
    assert result.returncode == 0, result.stderr[-2000:]
    dump = solver_dump(result.stderr)
    assert "gpu_math: TF32" in dump and "gpu_math: FP32" not in dump
    assert "cudnn_search: MEASURED" in dump
    assert "cudnn_deterministic: true" in dump
    assert "cudnn_workspace_limit_mb: 16" in dump            # the solver's, no flag given

    plain = caffe(tiny, "train", "-solver", "solver.prototxt")
    assert plain.returncode == 0, plain.stderr[-2000:]
    dump = solver_dump(plain.stderr)
    assert "gpu_math: FP32" in dump and "cudnn_search" not in dump


def test_time_and_test_take_the_flags_on_the_cpu(tiny):
    # nothing on the CPU reads them; the run goes on as without them
    result = caffe(tiny, "time", "-model", "net.prototxt", "-iterations", "1", "-gpu_math",
                   "tf32", "-cudnn_search", "measured", "-cudnn_workspace_mb", "256")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Average Forward-Backward" in result.stderr
