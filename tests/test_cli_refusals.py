"""Command lines refuse impossible numbers at parsing, naming the option and
the value (argparse's exit 2), before anything is read or written:
hmc_visualize, eval_crops and the benchmarks (make_nets': tests/test_nets.py;
the runners': their own tests)."""
import contextlib
import importlib.util
import io
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parser_of(relative, function="build_parser"):
    spec = importlib.util.spec_from_file_location(
        "cli_" + os.path.basename(relative)[:-3], os.path.join(REPO, relative))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, function)


def refusal(parse, argv):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exit_info:
        parse(argv)
    assert exit_info.value.code == 2
    return err.getvalue()


@pytest.mark.parametrize("option, value, message", [
    ("--warmup", "-2", "must be >= 0, got -2"),
    ("--target-accept", "1.5", "must be < 1, got 1.5"),
    ("--target-accept", "0", "must be > 0"),
    ("--seed", "-1", "must be >= 0, got -1")])
def test_hmc_visualize(option, value, message):
    parser = parser_of("python/hmc_visualize.py")()
    text = refusal(parser.parse_args, ["--preset", "lenet", option, value])
    assert option in text and message in text


@pytest.mark.parametrize("option, value", [("--limit", "0"), ("--batch-size", "0"),
                                           ("--jobs", "-1")])
def test_eval_crops(option, value):
    parser = parser_of("tools/eval_crops.py")()
    text = refusal(parser.parse_args, ["--model", "m", "--weights", "w", "--lmdb", "l",
                                       option, value])
    assert option in text and "must be >= 1, got %s" % value in text


@pytest.mark.parametrize("relative, argv, option, message", [
    ("tools/bench_nets.py", ["--run", "d", "--repeats", "0"], "--repeats", "must be >= 1"),
    ("tools/bench_nets.py", ["--run", "d", "--threads", "-1"], "--threads", "must be >= 0"),
    ("tools/bench_hmc.py", ["--workers", "0"], "--workers", "must be >= 1"),
    ("tools/eval_crops.py", ["--model", "m", "--weights", "w", "--lmdb", "l", "--gpu", "-1"],
     "--gpu", "must be >= 0"),
    ("python/hmc_visualize.py", ["--preset", "lenet", "--gpu", "-1"], "--gpu", "must be >= 0")])
def test_benchmarks_and_gpu_ids(relative, argv, option, message):
    if relative.startswith("tools/bench"):
        parse = parser_of(relative, "main")           # their parser is built in main()
    else:
        parse = parser_of(relative)().parse_args
    text = refusal(parse, argv)
    assert option in text and message in text
