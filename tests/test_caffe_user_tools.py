"""Caffe's own user tools with this build and Python 3: python/draw_net.py
(pydot and Graphviz from `make deps`) and tools/extra/parse_log.py,
parse_log.sh and plot_training_log.py.example (made Python 3 by
caffe/patches/python3-log-tools.patch), on a real training log."""
import csv
import os
import shutil
import subprocess
import sys

import pytest

from conftest import BUILD, REPO
from gencaffe import caffe_log

SOURCE = os.path.join(BUILD, "caffe-src")
EXTRA = os.path.join(SOURCE, "tools", "extra")
LOG = os.path.join(REPO, "tests", "fixtures", "caffe_train_lenet_dg_short.log")
needs_source = pytest.mark.skipif(not os.path.isdir(EXTRA),
                                  reason="needs the prepared upstream tree in %s" % SOURCE)


@needs_source
def test_draw_net_draws_a_committed_net(tmp_path):
    out = tmp_path / "lenet.png"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.join(SOURCE, "python"), os.path.join(REPO, "python")]))
    result = subprocess.run([sys.executable, os.path.join(SOURCE, "python", "draw_net.py"),
                             os.path.join(REPO, "models", "lenet", "lenet_dg.prototxt"), str(out)],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@needs_source
def test_parse_log_py_writes_the_logs_numbers(tmp_path):
    log = tmp_path / "lenet_dg.log"
    shutil.copy(LOG, log)
    result = subprocess.run([os.path.join(EXTRA, "parse_log.py"), str(log), str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "lenet_dg.log.train") as handle:
        train = list(csv.DictReader(handle))
    with open(tmp_path / "lenet_dg.log.test") as handle:
        test = list(csv.DictReader(handle))
    parsed = caffe_log.parse_file(LOG)
    # parse_log.py reads "Train net output" lines; the last display, Solve()'s
    # final "Iteration N, loss = ...", has none, so it is not among its rows
    displays = parsed.train_displays[:-1]
    assert [int(float(r["NumIters"])) for r in train] == [d.iteration for d in displays]
    assert [round(float(r["loss"]), 4) for r in train] == \
        [round(d.smoothed_loss, 4) for d in displays]
    assert [round(float(r["accuracy"]), 4) for r in test] == \
        [round(t.outputs["accuracy"], 4) for t in parsed.tests()]


@needs_source
def test_parse_log_sh_and_the_plot_example(tmp_path):
    """plot_training_log.py.example (copied beside parse_log.sh, as its help
    says to customise it) runs parse_log.sh, which runs extract_seconds.py,
    and draws chart 0 of the log."""
    tools = tmp_path / "extra"
    shutil.copytree(EXTRA, tools)
    shutil.copy(tools / "plot_training_log.py.example", tools / "plot_training_log.py")
    os.chmod(tools / "plot_training_log.py", 0o755)
    log = tmp_path / "lenet_dg.log"
    shutil.copy(LOG, log)
    env = dict(os.environ, MPLBACKEND="Agg")
    result = subprocess.run([str(tools / "plot_training_log.py"), "0", str(tmp_path / "c.png"),
                             str(log)], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    rows = [l.split() for l in (tmp_path / "lenet_dg.log.test").read_text().splitlines()[1:]]
    assert [int(r[0]) for r in rows] == [t.iteration for t in caffe_log.parse_file(LOG).tests()]
