"""The runners' shared options (gencaffe.experiments.runner_cli): declared once,
the same rules in every runner, and the settings they give."""
import argparse
import importlib.util
import os

import pytest

from conftest import REPO
from gencaffe.experiments import runner_cli

RUNNERS = ("reproduce_mnist", "reproduce_semi", "reproduce_coupled", "sweep_switch",
           "imagenet_smoke", "reproduce_tiny_imagenet", "reproduce_tiny_imagenet_semi")
SHARED = ("--caffe", "--jobs", "--threads", "--threads-per-job", "--gpu", "--runs-dir",
          "--results-dir", "--retries", "--report-only", "--progress-every")


def parser_of(name):
    spec = importlib.util.spec_from_file_location("runner_" + name,
                                                  os.path.join(REPO, "tools", name + ".py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    captured = {}

    def parse(parser, argv=None):
        captured["parser"] = parser
        raise SystemExit(0)
    original = argparse.ArgumentParser.parse_args
    argparse.ArgumentParser.parse_args = parse
    try:
        if hasattr(tool, "build_parser"):
            return tool.build_parser()
        with pytest.raises(SystemExit):
            tool.parse_args([])
        return captured["parser"]
    finally:
        argparse.ArgumentParser.parse_args = original


@pytest.mark.parametrize("name", RUNNERS)
def test_every_runner_has_the_shared_options_with_the_same_rules(name):
    pytest.importorskip("caffe.proto.caffe_pb2", reason="the MNIST runners import pycaffe's proto")
    parser = parser_of(name)
    options = {s for a in parser._actions for s in a.option_strings}
    assert set(SHARED) <= options
    args = parser.parse_args(["--threads-per-job", "3", "--jobs", "2", "--retries", "0"])
    assert (args.threads, args.jobs, args.retries) == (3, 2, 0)
    assert args.progress_every == runner_cli.PROGRESS_EVERY_S
    for bad in (["--jobs", "0"], ["--threads", "-1"], ["--retries", "-1"],
                ["--progress-every", "0"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)


def test_running_settings_are_the_run_settings_fields(monkeypatch):
    from gencaffe.experiments.caffe_runs import RunSettings
    monkeypatch.setattr(runner_cli, "limit_own_blas_threads", lambda threads: None)
    parser = argparse.ArgumentParser()
    runner_cli.add_running_options(parser, "/repo", runs_dir_help="x", results_dir_help="y")
    args = parser.parse_args(["--caffe", "bin/caffe", "--gpu", "1", "--threads", "2"])
    fields = runner_cli.running_settings(args)
    settings = RunSettings(repo="/repo", **fields)
    assert settings.caffe == os.path.abspath("bin/caffe")
    assert (settings.gpu, settings.threads_per_job, settings.jobs, settings.retries) == (1, 2, 1, 1)
    assert parser.parse_args([]).caffe == "/repo/build/cpu/caffe/tools/caffe"


def test_the_drivers_own_blas_threads_are_one_trainings(monkeypatch):
    """A driver's in-process forward passes run beside its trainings: its BLAS
    gets --threads, through the variables and, where OpenBLAS is loaded
    already, at run time."""
    import ctypes
    for name in runner_cli.BLAS_THREAD_VARIABLES:
        monkeypatch.setenv(name, "7")
    try:
        openblas = ctypes.CDLL("libopenblas.so.0")
        before = openblas.openblas_get_num_threads()
        openblas.openblas_set_num_threads(2)          # so that 1 below is a change
        if openblas.openblas_get_num_threads() != 2:
            openblas.openblas_set_num_threads(before)
            openblas = None
    except (OSError, AttributeError):
        openblas = None
    try:
        runner_cli.limit_own_blas_threads(1)
        assert all(os.environ[name] == "1" for name in runner_cli.BLAS_THREAD_VARIABLES)
        if openblas is not None:
            assert openblas.openblas_get_num_threads() == 1
    finally:
        if openblas is not None:
            openblas.openblas_set_num_threads(before)


def test_ordered_pairs_and_missing_lmdbs(tmp_path, capsys):
    assert runner_cli.ordered("ab", [1, 2], first_outer=True) == [
        ("a", 1), ("a", 2), ("b", 1), ("b", 2)]
    assert runner_cli.ordered("ab", [1, 2], first_outer=False) == [
        ("a", 1), ("b", 1), ("a", 2), ("b", 2)]
    from gencaffe.experiments.caffe_runs import RunSettings
    (tmp_path / "train_lmdb").mkdir()
    (tmp_path / "train_lmdb" / "data.mdb").write_bytes(b"")
    (tmp_path / "test_lmdb").mkdir()
    settings = RunSettings(repo=str(tmp_path), caffe="caffe")
    assert not runner_cli.missing_lmdbs(settings, ["train_lmdb"], "make it")
    assert runner_cli.missing_lmdbs(settings, ["train_lmdb", "test_lmdb"], "make it")
    assert "error: test_lmdb missing; make it" in capsys.readouterr().out
