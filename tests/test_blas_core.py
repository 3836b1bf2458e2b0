"""gencaffe.blas_core: OpenBLAS's kernel chosen for a CPU it does not know,
from the CPU's flags; the user's own OPENBLAS_CORETYPE is never changed; and
against the built caffe, the core OpenBLAS reports."""
import os

import pytest

from gencaffe import blas_core
from conftest import BUILD, REPO

SKX = {"sse3", "avx", "avx2", "fma", "avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl",
       "avx512_fp16"}


def test_a_fallback_on_a_capable_cpu_gets_the_best_kernel_it_can_run():
    assert blas_core.better_core("Prescott", SKX) == "SkylakeX"
    assert blas_core.better_core("Prescott", {"avx", "avx2", "fma"}) == "Haswell"
    assert blas_core.better_core("Prescott", {"avx512f", "avx2"}) is None   # neither complete
    assert blas_core.better_core("SkylakeX", SKX) is None      # OpenBLAS knew the CPU
    assert blas_core.better_core("Haswell", SKX) is None       # its choice stands
    assert blas_core.better_core(None, SKX) is None            # no report: nothing to go on


def test_cpu_flags_read_the_first_cpu(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 fma\n\nprocessor\t: 1\nflags\t: x\n")
    assert blas_core.cpu_flags(str(info)) == {"fpu", "avx2", "fma"}
    assert blas_core.cpu_flags(str(tmp_path / "none")) == set()


def test_choose_sets_the_variable_only_where_it_helps_and_the_user_did_not(tmp_path,
                                                                           monkeypatch):
    fake = tmp_path / "fake_caffe"
    fake.write_text("#!/bin/sh\necho \"Core: Prescott\"\necho caffe version 1\n")
    fake.chmod(0o755)
    env = {"PATH": os.environ.get("PATH", "")}
    assert blas_core.choose(str(fake), env, flags=SKX) == "SkylakeX"
    assert env["OPENBLAS_CORETYPE"] == "SkylakeX"
    mine = {"OPENBLAS_CORETYPE": "Haswell"}
    assert blas_core.choose(str(fake), mine, flags=SKX) is None
    assert mine["OPENBLAS_CORETYPE"] == "Haswell"
    plain = {}
    assert blas_core.choose(str(fake), plain, flags={"sse3"}) is None and plain == {}
    assert blas_core.choose(str(tmp_path / "missing"), plain, flags=SKX) is None


CAFFE = os.path.join(BUILD, "caffe", "tools", "caffe")


@pytest.mark.skipif(not os.access(CAFFE, os.X_OK), reason="needs the CPU build")
def test_the_built_caffe_reports_its_openblas_core_and_obeys_the_variable():
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    assert blas_core.chosen_core(CAFFE, env)        # whatever this CPU gets, it is named
    if {"avx2", "fma"} <= blas_core.cpu_flags():
        assert blas_core.chosen_core(CAFFE, dict(env, OPENBLAS_CORETYPE="Haswell")) == "Haswell"


def test_make_test_runs_the_gtests_with_the_kernel_the_tools_choose(tmp_path, monkeypatch):
    """scripts/run_tests.py gives both parts (the gtest binary, pytest) the
    OPENBLAS_CORETYPE the tools would set, and keeps the user's own."""
    monkeypatch.syspath_prepend(os.path.join(REPO, "scripts"))
    import run_tests
    build = tmp_path / "build"
    (build / "caffe" / "tools").mkdir(parents=True)
    fake = build / "caffe" / "tools" / "caffe"
    fake.write_text("#!/bin/sh\necho \"Core: Prescott\"\n")
    fake.chmod(0o755)
    monkeypatch.setattr(blas_core, "cpu_flags", lambda path="/proc/cpuinfo": SKX)
    env = run_tests.environment_for_tests(str(build), {"PATH": os.environ.get("PATH", "")})
    assert env["OPENBLAS_CORETYPE"] == "SkylakeX"
    assert env["CAFFE_BUILD_DIR"] == str(build)
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(build / "caffe-src" / "python")
    mine = run_tests.environment_for_tests(str(build), {"OPENBLAS_CORETYPE": "Haswell"})
    assert mine["OPENBLAS_CORETYPE"] == "Haswell"
    fake.write_text("#!/bin/sh\necho \"Core: SkylakeX\"\n")       # OpenBLAS knew the CPU
    assert "OPENBLAS_CORETYPE" not in run_tests.environment_for_tests(str(build), {})
