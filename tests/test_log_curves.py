"""gencaffe.experiments.log_curves and tools/plot_log.py: outputs of Caffe
logs over iterations, read from a runner's epoch chunks in training order
(epoch10 after epoch2, a live chunk's train.log.partial too), with clear
errors for a missing run or output; the CLI writes the PNG and the CSV."""
import contextlib
import importlib.util
import io
import os

import pytest

from gencaffe.experiments import log_curves

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(REPO, "tools", "plot_log.py")
PREFIX = "I1205 08:00:00.000000 1 solver.cpp:%d] "


def caffe_log_text(displays, tests=()):
    """Caffe-format solver lines: displays = [(iteration, {output: value})],
    tests = [(iteration, {output: value})] (test net #0)."""
    lines = []
    for iteration, outputs in tests:
        lines.append(PREFIX % 347 + "Iteration %d, Testing net (#0)" % iteration)
        for index, (name, value) in enumerate(outputs.items()):
            lines.append(PREFIX % 414 + "    Test net output #%d: %s = %g" % (index, name, value))
    for iteration, outputs in displays:
        loss = outputs.get("loss", 0.0)
        lines.append(PREFIX % 239 + "Iteration %d (1 iter/s, 20s/20 iters), loss = %g"
                     % (iteration, loss))
        for index, (name, value) in enumerate(outputs.items()):
            lines.append(PREFIX % 258 + "    Train net output #%d: %s = %g"
                         % (index, name, value))
    return "\n".join(lines) + "\n"


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def run_dir(tmp_path):
    """A runner's run folder: epochs 1, 2 and 10 done, 11 training; epoch 2
    logs iteration 20 again (the later chunk's value counts)."""
    root = tmp_path / "run"
    write(root / "epoch1" / "train.log", caffe_log_text(
        [(0, {"ess": 0.99, "loss": 0.5}), (10, {"ess": 0.9, "loss": 0.4})],
        tests=[(0, {"accuracy": 0.01})]))
    write(root / "epoch2" / "train.log", caffe_log_text(
        [(20, {"ess": 0.5, "loss": 0.3}), (30, {"ess": 0.4, "loss": 0.2})],
        tests=[(40, {"accuracy": 0.05})]))
    write(root / "epoch10" / "train.log", caffe_log_text([(90, {"ess": 0.1, "loss": 0.1})]))
    write(root / "epoch11" / "train.log.partial", caffe_log_text([(100, {"ess": 0.05})]))
    (root / "epoch12").mkdir()  # made, nothing logged yet
    write(root / "done.json", "{}")
    return root


def test_epoch_chunks_are_read_in_training_order(run_dir):
    logs = log_curves.log_files(str(run_dir))
    assert [os.path.basename(os.path.dirname(p)) for p in logs] == [
        "epoch1", "epoch2", "epoch10", "epoch11"]
    assert logs[-1].endswith("train.log.partial")
    series = log_curves.run_series(str(run_dir), ["ess", "test:accuracy"])
    assert series["ess"] == [(0, 0.99), (10, 0.9), (20, 0.5), (30, 0.4), (90, 0.1),
                             (100, 0.05)]
    assert series["test:accuracy"] == [(0, 0.01), (40, 0.05)]


def test_a_later_chunk_wins_a_repeated_iteration(tmp_path):
    write(tmp_path / "epoch1" / "train.log", caffe_log_text([(20, {"ess": 0.7})]))
    write(tmp_path / "epoch2" / "train.log", caffe_log_text([(20, {"ess": 0.2})]))
    assert log_curves.run_series(str(tmp_path), ["ess"])["ess"] == [(20, 0.2)]


def test_a_single_log_file_or_folder(tmp_path):
    write(tmp_path / "a" / "train.log", caffe_log_text([(5, {"loss": 1.5})]))
    assert log_curves.run_series(str(tmp_path / "a"), ["loss"]) == {"loss": [(5, 1.5)]}
    assert log_curves.run_series(str(tmp_path / "a" / "train.log"), ["loss"]) == {
        "loss": [(5, 1.5)]}


def test_a_missing_output_names_the_run_and_what_it_has(run_dir):
    with pytest.raises(ValueError) as err:
        log_curves.run_series(str(run_dir), ["ess_within"])
    message = str(err.value)
    assert str(run_dir) in message and "'ess_within'" in message
    assert "ess, loss, test:accuracy" in message


def test_missing_or_empty_runs_are_named(tmp_path):
    with pytest.raises(ValueError, match="no such log file or run folder"):
        log_curves.log_files(str(tmp_path / "nowhere"))
    (tmp_path / "empty" / "epoch1").mkdir(parents=True)
    with pytest.raises(ValueError, match="empty has no train.log"):
        log_curves.log_files(str(tmp_path / "empty"))


def test_csv_quotes_names():
    text = log_curves.csv_text([('50k "semi", GG', {"ess": [(0, 0.5)]})], ["ess"])
    assert text == 'run,output,iteration,value\n"50k ""semi"", GG",ess,0,0.5\n'


def run_tool(*args):
    spec = importlib.util.spec_from_file_location("plot_log_cli", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = module.main(list(args))
        except SystemExit as exit_:
            code = exit_.code
    return code, out.getvalue(), err.getvalue()


def test_cli_writes_png_and_csv(run_dir, tmp_path):
    pytest.importorskip("matplotlib")
    png, csv = tmp_path / "out" / "ess.png", tmp_path / "out" / "ess.csv"
    code, out, err = run_tool("--run", "semi=%s" % run_dir, "--run",
                              "one=%s" % (run_dir / "epoch1" / "train.log"),
                              "--output", "ess", "--output", "test:accuracy",
                              "--max-iteration", "50", "--out", str(png), "--csv", str(csv))
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = csv.read_text().splitlines()
    assert rows[0] == "run,output,iteration,value"
    assert '"semi",ess,100,0.05' in rows and '"one",test:accuracy,0,0.01' in rows
    assert sorted(os.listdir(png.parent)) == ["ess.csv", "ess.png"]  # no temp files left


def test_cli_errors_name_the_problem(run_dir, tmp_path):
    png = tmp_path / "x.png"
    code, _, err = run_tool("--run", "semi=%s" % run_dir, "--output", "nope", "--out", str(png))
    assert code == 1 and "'nope'" in err and str(run_dir) in err
    assert not png.exists()
    code, _, err = run_tool("--run", "no-equals-sign", "--out", str(png))
    assert code == 2 and "expected NAME=PATH" in err
