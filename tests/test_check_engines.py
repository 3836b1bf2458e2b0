"""tools/check_engines.py's comparison rule and its report of where a GPU run
first leaves the CPU's (the GPU run itself needs a GPU: tools/gpu_checks.sh)."""
import os
import sys

import numpy as np
import pytest

from conftest import REPO

sys.path.insert(0, os.path.join(REPO, "tools"))
pytest.importorskip("caffe", reason="check_engines imports pycaffe")
import check_engines  # noqa: E402


def test_relative_error_is_scaled_by_the_reference_maximum():
    reference = np.array([0.0, 2.0, -4.0])
    assert check_engines.relative_error(reference, reference) == 0
    assert check_engines.relative_error(reference + [0, 0, 0.04], reference) == pytest.approx(0.01)


def test_first_divergence_names_the_layer():
    ones = np.ones(3)
    reference = {"data": (ones, ones), "conv1": (ones, ones), "pool1": (ones, ones),
                 "fc8": (ones, ones)}
    gpu = dict(reference)
    gpu["pool1"] = (ones, ones * 1.5)        # forward fine, backward off from pool1 down
    gpu["conv1"] = (ones, ones * 1.5)
    gpu["data"] = (ones, ones * 1.5)
    assert check_engines.first_divergence(gpu, reference, 1e-3) == \
        "forward first off at none; backward first off at pool1"
    gpu["conv1"] = (ones * 2, ones * 1.5)
    assert check_engines.first_divergence(gpu, reference, 1e-3).startswith(
        "forward first off at conv1")
