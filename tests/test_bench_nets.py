"""tools/bench_nets.py: --prepare writes generator nets with DummyData (and LMDB)
input; --run needs only a caffe binary and the standard library. The run step is
checked here with a stand-in caffe (so its GPU path too): the order of the timings
(DG, GG alternating), the best-of ratio, the throughput from glog timestamps, and
the thread setting."""
import json
import os
import stat
import subprocess
import sys
import textwrap

import pytest

from conftest import REPO

TOOL = os.path.join(REPO, "tools", "bench_nets.py")

# `caffe time`: DG nets 100 ms, GG nets 101 ms, except a slow first repetition;
# the loss layer forward + backward DG 0.5 ms, GG 1.5 ms;
# `caffe train`: display lines 0.5 s apart for 10 iterations (batch from the net).
FAKE = textwrap.dedent('''\
    import os, re, sys
    args = sys.argv[1:]
    if os.environ.get("GLOG_minloglevel", "0") != "0":   # as glog: no INFO lines
        sys.exit(0)
    with open(os.environ["FAKE_CALLS"], "a") as calls:
        calls.write("%s threads=%s\\n" % (" ".join(args), os.environ.get("OPENBLAS_NUM_THREADS")))
    if args[0] == "time":
        model = args[args.index("-model") + 1]
        count = sum(1 for line in open(os.environ["FAKE_CALLS"]) if model in line)
        ms = (101.0 if "_gg_" in model else 100.0) + (50.0 if count == 1 else 0.0)
        sys.stderr.write("I1126 06:00:00.000000 1 caffe.cpp:400]      conv1\\tforward: 40 ms.\\n")
        for what, t in (("forward", 0.7), ("backward", 0.8)) if "_gg_" in model else \
                (("forward", 0.2), ("backward", 0.3)):
            sys.stderr.write("I1126 06:00:00.000000 1 caffe.cpp:400]       loss\\t%s: %g ms.\\n"
                             % (what, t))
        sys.stderr.write("I1126 06:00:00.000000 1 caffe.cpp:412] Average Forward-Backward: %g ms.\\n" % ms)
    elif args[0] == "train":
        for i in range(0, 11, 2):
            sys.stderr.write("I20261126 06:00:%09.6f 1 solver.cpp:239] Iteration %d (2 iter/s), loss = 1\\n"
                             % (10 + 0.5 * i, i))
    ''')


@pytest.fixture
def prepared(tmp_path):
    pytest.importorskip("caffe", reason="--prepare needs pycaffe (the net generator)")
    plan_dir = tmp_path / "plan"
    subprocess.run([sys.executable, TOOL, "--prepare", str(plan_dir), "--arch", "alexnet",
                    "--arch", "lenet", "--batch", "alexnet=4", "--batch", "lenet=8",
                    "--lmdb-source", "/somewhere/random_lmdb", "--throughput-iterations", "10"],
                   check=True, capture_output=True, text=True, timeout=300)
    fake = tmp_path / "caffe"
    fake.write_text("#!%s\n%s" % (sys.executable, FAKE))
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    return plan_dir, fake


def test_prepare_writes_dummy_data_nets_and_lmdb_throughput_solvers(prepared):
    plan_dir, _ = prepared
    plan = json.loads((plan_dir / "plan.json").read_text())
    assert sorted((p["arch"], p["batch"]) for p in plan["time"]) == [("alexnet", 4), ("lenet", 8)]
    for pair in plan["time"]:
        for loss in ("dg", "gg"):
            text = (plan_dir / pair[loss]).read_text()
            assert 'type: "DummyData"' in text and 'type: "Data"' not in text
            assert ("GenerativeLoss" in text) == (loss == "gg")
    sources = {(t["loss"], t["source"], t["engine"]) for t in plan["throughput"]}
    assert ("dg", "lmdb", "DEFAULT") in sources and ("gg", "dummy", "DEFAULT") in sources
    lmdb_net = next(t for t in plan["throughput"] if t["source"] == "lmdb")
    solver = (plan_dir / lmdb_net["solver"]).read_text()
    net = (plan_dir / solver.split('net: "')[1].split('"')[0]).read_text()
    assert 'source: "/somewhere/random_lmdb"' in net       # read at run time, not now
    assert "max_iter: 10" in solver and "solver_mode: GPU" in solver


def test_run_alternates_takes_the_best_and_parses_throughput(prepared, tmp_path, monkeypatch):
    plan_dir, fake = prepared
    calls = tmp_path / "calls.txt"
    monkeypatch.setenv("FAKE_CALLS", str(calls))
    out = tmp_path / "bench.md"
    result = subprocess.run([sys.executable, TOOL, "--run", str(plan_dir), "--caffe", str(fake),
                             "--gpu", "0", "--repeats", "3", "--iterations", "7",
                             "--out", str(out)], capture_output=True, text=True, timeout=300,
                            # GLOG_minloglevel=2 as on the GPU machine, where it hid the
                            # INFO lines the timings are read from
                            env=dict(os.environ, OPENBLAS_NUM_THREADS="8", GLOG_minloglevel="2"))
    assert result.returncode == 0, result.stderr
    lines = calls.read_text().splitlines()
    times = [l for l in lines if l.startswith("time")]
    # DG GG DG GG ... per architecture, each with -gpu 0 and one BLAS thread
    assert ["_gg_" in l for l in times] == [False, True] * 6
    assert all("-gpu 0" in l and "-iterations 7" in l and l.endswith("threads=1") for l in times)
    report = out.read_text()
    # the slow first repetitions are not the best: 101 / 100
    assert "| alexnet | 4 | 100.000 (100.000) | 101.000 (101.000) | **1.010** |" in report
    # from inside the runs: median DG net 100 ms - its loss 0.5 + GenerativeLoss's 1.5
    assert "| **1.010** | 0.500 / 1.500 | **1.0100** |" in report
    # 8 iterations x batch 4 between the 2nd (t = 11 s) and the last (t = 15 s) display
    assert "| alexnet | DG | lmdb | DEFAULT | fp32 | 4 | 8 |" in report
    # on a GPU the default engine runs once per settings preset, with its flags;
    # Caffe's own engine once, with none
    trains = [l for l in lines if l.startswith("train")]
    plan = json.loads((plan_dir / "plan.json").read_text())
    for entry in plan["throughput"]:
        runs = [l for l in trains if entry["solver"] in l]
        if entry["engine"] == "CAFFE":
            assert len(runs) == 1 and "-gpu_math" not in runs[0] and "-cudnn" not in runs[0]
            continue
        assert len(runs) == 3
        assert "-gpu_math" not in runs[0] and "-cudnn" not in runs[0]
        assert "-cudnn_search measured -cudnn_workspace_mb 1024" in runs[1]
        assert "-gpu_math" not in runs[1]
        assert "-gpu_math tf32 -cudnn_search measured -cudnn_workspace_mb 1024" in runs[2]
    assert "| alexnet | DG | lmdb | DEFAULT | tf32-measured | 4 | 8 |" in report
    # an iteration of batch 4 at 8 images/s = 500 ms, of which `caffe time`'s best
    # forward + backward is 100 ms (DG) / 101 ms (GG): the rest is training's own
    split = report.split("## Where a training iteration goes")[1].split("##")[0]
    assert "| alexnet | DG | dummy | 4 | 500.00 | 100.00 | 400.00 | 80 % |" in split
    assert "| alexnet | GG | dummy | 4 | 500.00 | 101.00 | 399.00 | 80 % |" in split
    assert "| alexnet | DG | lmdb | 4 | 500.00 | 100.00 | 400.00 | 80 % |" in split
    assert "CAFFE" not in split and "tf32" not in split
    assert "| alexnet | DG | lmdb | CAFFE | fp32 | 4 | 8 |" in report
    assert "| alexnet | DG | lmdb | CAFFE | tf32-measured |" not in report
    assert "BLAS threads: 1" in report


def test_torch_baseline_trains_the_same_nets_beside_caffes(prepared, tmp_path, monkeypatch):
    """--torch: every DummyData net on the default engine trained by PyTorch on the
    same device (here the CPU: fp32 only), reported with Caffe / PyTorch."""
    pytest.importorskip("torch")
    plan_dir, fake = prepared
    monkeypatch.setenv("FAKE_CALLS", str(tmp_path / "calls.txt"))
    out = tmp_path / "bench.md"
    result = subprocess.run([sys.executable, TOOL, "--run", str(plan_dir), "--caffe", str(fake),
                             "--repeats", "1", "--iterations", "1", "--torch",
                             "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    report = out.read_text()
    assert "## Against PyTorch on the same device" in report
    against = report.split("## Against PyTorch on the same device")[1]
    rows = [l for l in against.splitlines() if l.startswith("| alexnet | ") and "| fp32 |" in l]
    assert [r.split("|")[2].strip() for r in rows] == ["DG", "GG"]      # the DummyData runs
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        torch_rate, caffe_rate, ratio = float(cells[4]), float(cells[6]), cells[7]
        assert cells[5] == "fp32"                                        # Caffe's settings
        assert caffe_rate == 8 and torch_rate > 0                        # the fake caffe's 8/s
        assert float(ratio.strip("*")) == pytest.approx(caffe_rate / torch_rate, abs=0.006)


def test_torch_baseline_without_torch_says_what_is_missing(prepared, tmp_path):
    plan_dir, fake = prepared
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "torch.py").write_text("raise ImportError('no torch here')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(shadow),
                                                       os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([sys.executable, TOOL, "--run", str(plan_dir), "--caffe", str(fake),
                             "--torch"], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode != 0
    assert "--torch needs PyTorch and pycaffe's caffe_pb2 (no torch here)" in result.stderr


def test_a_failed_torch_mode_is_reported_and_the_caffe_rows_kept(prepared, monkeypatch):
    import importlib.util
    from gencaffe.nets import torch_port
    plan_dir, _ = prepared
    spec = importlib.util.spec_from_file_location("bench_nets_tool", TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)

    def fake_rate(net, device, mode, iterations):
        assert device == "cuda:0"
        if mode == "bf16":
            raise RuntimeError("bf16 not supported here\nmore detail")
        return {"images_per_s": {"fp32": 4.0, "tf32": 16.0}[mode], "mode": mode,
                "torch": "9.9", "cudnn": 91900}
    monkeypatch.setattr(torch_port, "training_images_per_second", fake_rate)
    plan = json.loads((plan_dir / "plan.json").read_text())
    # Caffe in each settings preset: FP32 heuristic 8/s, FP32 measured 10/s, TF32 12/s
    rates = {"fp32": 8.0, "fp32-measured": 10.0, "tf32-measured": 12.0}
    caffe_rows = [dict(e, images_per_s=rates[s], settings=s) for e in plan["throughput"]
                  for s in rates]
    baseline = tool.torch_rows(str(plan_dir), caffe_rows, 0, progress=lambda s: None)
    assert [(r["loss"], r["mode"]) for r in baseline] == [
        (loss, mode) for loss in ("dg", "gg") for mode in ("fp32", "tf32", "bf16")]
    report = tool.report([], caffe_rows, None, 1, 1, baseline)
    assert "PyTorch 9.9, cuDNN 91900" in report
    # each PyTorch precision against Caffe's fastest run at the same precision
    assert "| alexnet | DG | 4 | fp32 | 4 | fp32-measured | 10 | **2.50** |" in report
    assert "| alexnet | DG | 4 | tf32 | 16 | tf32-measured | 12 | **0.75** |" in report
    assert ("| alexnet | GG | 4 | bf16 | failed: RuntimeError: bf16 not supported here "
            "| - | - | - |") in report
    assert "| alexnet | DG | lmdb | DEFAULT | fp32 | 4 | 8 |" in report  # Caffe's own rows
