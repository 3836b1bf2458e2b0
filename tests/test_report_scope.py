"""What the runners' reports cover: the runs asked for plus those on disk
(caffe_runs.report_scope and friends), and the command a report names
(cli_args.int_list_text, with_options)."""
import argparse
import os

import pytest

from conftest import REPO
from gencaffe.cli_args import int_list, int_list_text, with_options
from gencaffe.experiments import caffe_runs


@pytest.mark.parametrize("text", ["1", "1-3", "1-3,9", "2,4,6", "1-2,4-5,7"])
def test_int_list_text_is_int_lists_inverse(text):
    assert int_list_text(int_list(text)) == text


def test_int_list_text_sorts_and_merges():
    assert int_list_text([9, 3, 1, 2, 3]) == "1-3,9"


def test_with_options_replaces_appends_and_drops():
    argv = ["--seeds", "3", "--arms=a", "--jobs", "2", "--no-samples"]
    assert with_options(argv, {"--seeds": "1-3", "--arms": None, "--order": "arm"}) == [
        "--jobs", "2", "--no-samples", "--seeds", "1-3", "--order", "arm"]
    assert with_options(argv, {}) == argv


def make_runs(root, layout):
    for path in layout:
        os.makedirs(os.path.join(str(root), path))


def test_report_scope_widens_by_the_runs_on_disk(tmp_path):
    make_runs(tmp_path, ["dg/seed1", "dg/seed4", "gg/seed2", "other/seed9", "gg/seedling",
                         "gg/seed3x"])
    (tmp_path / "gg" / "seed7").write_text("a file, not a run")
    assert caffe_runs.numbered_folders(str(tmp_path / "gg"), "seed") == [2]
    assert caffe_runs.numbered_folders(str(tmp_path / "missing"), "seed") == []
    # asked for gg seed 5 only: dg and gg (in the runner's order), seeds 1, 2, 4, 5
    assert caffe_runs.report_scope(str(tmp_path), ["gg"], ["dg", "gg", "gg_dg"], [5]) == (
        ["dg", "gg"], [1, 2, 4, 5])
    assert caffe_runs.report_scope(str(tmp_path / "none"), ["gg"], ["dg", "gg"], [5]) == (
        ["gg"], [5])


def test_semi_report_scope_widens_ks_seeds_and_approaches(tmp_path):
    from gencaffe.experiments import semi_cli
    make_runs(tmp_path, ["k100/seed1/dg", "k100/seed2/semi_gg", "k600/seed1/semi_gg_dg"])
    asked = argparse.Namespace(ks=[3000], seeds=[3], approaches=["semi_gg"])
    assert semi_cli.report_scope(str(tmp_path), asked) == (
        [100, 600, 3000], [1, 2, 3], ["dg", "semi_gg", "semi_gg_dg"])


def test_imagenet_smoke_report_scope_widens_archs_and_approaches(tmp_path):
    import dataclasses
    from gencaffe.experiments import imagenet_smoke_cli

    @dataclasses.dataclass
    class Settings:
        archs: list
        approaches: list

    make_runs(tmp_path, ["alexnet/dg", "alexnet/gg_dg/stage1"])
    asked = argparse.Namespace(runs_dir=str(tmp_path), archs=["zf"], approaches=["gg"])
    settings, command = imagenet_smoke_cli.report_scope(
        Settings(["zf"], ["gg"]), asked, ["--archs", "zf", "--approaches", "gg", "--jobs", "2"],
        REPO)
    assert (settings.archs, settings.approaches) == (["alexnet", "zf"], ["dg", "gg", "gg_dg"])
    assert command == "python3 tools/imagenet_smoke.py --jobs 2"


def test_report_command_scope_and_fixed_flags():
    from gencaffe.cli_args import report_command
    argv = ["--seeds", "1", "--jobs", "2", "--report-only"]
    # covers the defaults: --seeds dropped; covers more than asked: widened
    assert report_command("t.py", argv, {"--seeds": ([1, 2], [1], [1, 2])}) == "t.py --jobs 2"
    assert report_command("t.py", argv, {"--seeds": ([1, 3], [1], [1, 2])}) == (
        "t.py --jobs 2 --seeds 1,3")
    assert report_command("t.py", argv, {"--seeds": ([1], [1], [1, 2])}) == (
        "t.py --seeds 1 --jobs 2")
    assert report_command("t.py", argv, {}, {"--seeds": None, "--zf-seeds": "1-2"}) == (
        "t.py --jobs 2 --zf-seeds 1-2")


def test_tiny_imagenet_report_command_names_the_seeds_it_covers():
    from gencaffe.experiments.tiny_imagenet_report import seed_options
    every = ["--seeds", "--alexnet-seeds", "--zf-seeds"]
    # the driver's `--seeds 1` once seeds 2-3 have folders: the table is the default one
    assert seed_options({"alexnet": [1, 2, 3], "zf": [1, 2]}, {"alexnet": [1], "zf": [1]}) == (
        dict.fromkeys(every))
    assert seed_options({"alexnet": [1], "zf": [1]}, {"alexnet": [1], "zf": [1]}) == {}
    assert seed_options({"alexnet": [1, 4], "zf": [1]}, {"alexnet": [4], "zf": [1]}) == {
        "--seeds": None, "--alexnet-seeds": "1,4", "--zf-seeds": "1"}


def test_tiny_imagenet_report_scope_adds_asked_seeds_to_asked_nets_only(tmp_path):
    from gencaffe.experiments import tiny_imagenet
    from gencaffe.experiments.tiny_imagenet_report import scope
    make_runs(tmp_path, ["alexnet/dg/seed1", "zf/gg/seed2"])
    settings = tiny_imagenet.Settings(repo=str(tmp_path), caffe="caffe", runs_dir=str(tmp_path),
                                      archs=["alexnet"], seeds={"alexnet": [3], "zf": [3]})
    # ZF is on disk but not asked for: its seed 2 only; the ledger adds ZF seed 1
    assert scope(settings, {"zf-dg-seed1": {}}) == (["alexnet", "zf"],
                                                    {"alexnet": [1, 3], "zf": [1, 2]})
