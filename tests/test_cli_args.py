"""The argparse types every command line shares (gencaffe.cli_args): each
refuses what it does not take with argparse's error, naming the value."""
import argparse

import pytest


@pytest.mark.parametrize("text, ok", [("0", True), ("0.1", True), ("-0.1", False),
                                      ("nan", False), ("inf", False), ("x", False)])
def test_non_negative_float(text, ok):
    from gencaffe.cli_args import non_negative_float
    if ok:
        assert non_negative_float(text) == float(text)
    else:
        with pytest.raises(argparse.ArgumentTypeError):
            non_negative_float(text)


@pytest.mark.parametrize("text, expected", [("256", (256, 256)), ("64x48", (64, 48)),
                                            (" 7X9 ", (7, 9)), ("0", None), ("4x0", None),
                                            ("x4", None), ("4x4x4", None), ("-4", None)])
def test_size_hw(text, expected):
    from gencaffe.cli_args import size_hw
    if expected:
        assert size_hw(text) == expected
    else:
        with pytest.raises(argparse.ArgumentTypeError):
            size_hw(text)


@pytest.mark.parametrize("kind, text, ok", [
    ("positive_float", "1e-5", True), ("positive_float", "0", False),
    ("positive_float", "nan", False), ("non_negative_int", "0", True),
    ("non_negative_int", "-1", False), ("non_negative_int", "1.5", False),
    ("open_share", "0.5", True), ("open_share", "0", False), ("open_share", "1", False),
    ("open_share", "nan", False)])
def test_number_types(kind, text, ok):
    from gencaffe import cli_args
    parse = getattr(cli_args, kind)
    if ok:
        assert parse(text) == float(text)
    else:
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)


@pytest.mark.parametrize("text, expected", [
    ("GG=runs/gg", ("GG", "runs/gg")), (" 50k semi GG = a=b.log ", ("50k semi GG", "a=b.log")),
    ("runs/gg", None), ("=runs/gg", None), ("GG=", None), (" = ", None)])
def test_named_path(text, expected):
    from gencaffe.cli_args import named_path
    if expected:
        assert named_path(text) == expected
    else:
        with pytest.raises(argparse.ArgumentTypeError, match="expected NAME=PATH"):
            named_path(text)
