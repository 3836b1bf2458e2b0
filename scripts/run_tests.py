#!/usr/bin/env python3
"""Run the whole test suite and close with one line `N passed, N failed, N skipped`.

Two parts, both always run:
  1. the gtest binary of the build (all of upstream Caffe's tests plus ours),
     from the patched source root, where upstream's tests find their data;
  2. pytest over tests/.
Counts come from each runner's JUnit XML, so a runner that crashes before
writing its report is counted as a failure, never silently as zero tests.
GPU gtests run only when the build has CUDA and a GPU is visible; otherwise
they are reported as skipped.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "python"))
from gencaffe import blas_core  # noqa: E402  (plain stdlib module, no pycaffe)


# The gtests that need a GPU in a CUDA build: the GPU types of the typed tests
# (/2 and /3 of TestDtypesAndDevices), tests named for the GPU or cuDNN, and the
# im2col kernel tests. (A CPU-only build has none of the first and its CuDNN*
# tests check build-independent code, so there only *GPU* is left out.)
GPU_TESTS = "*/2.*:*/3.*:*GPU*:*CuDNN*:*Cudnn*:Im2colKernelTest*"


def count_junit(path):
    """Return (passed, failed, skipped) from a JUnit XML report (gtest or pytest)."""
    root = ET.parse(path).getroot()
    passed = failed = skipped = 0
    for case in root.iter("testcase"):
        if case.get("status") == "notrun":
            continue      # gtest lists the tests its filter or shard left out: not run, not skipped
        children = {child.tag for child in case}
        if children & {"failure", "error"}:
            failed += 1
        elif "skipped" in children:
            skipped += 1
        else:
            passed += 1
    return passed, failed, skipped


def gpu_visible():
    try:
        return subprocess.run(["nvidia-smi", "-L"], capture_output=True,
                              timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def build_has_cuda(build_dir):
    cache = os.path.join(build_dir, "CMakeCache.txt")
    with open(cache) as f:
        return any(line.strip() == "CPU_ONLY:BOOL=OFF" for line in f)


def run_part(name, cmd, report, env, cwd):
    print(f"==> {name}: {' '.join(cmd)}", flush=True)
    code = subprocess.call(cmd, env=env, cwd=cwd)
    if not os.path.exists(report):
        print(f"==> {name}: no report written (exit code {code}); counted as 1 failure")
        return 0, 1, 0
    passed, failed, skipped = count_junit(report)
    if code != 0 and failed == 0:
        # e.g. pytest collection errors, or a crash after the report
        print(f"==> {name}: exit code {code} with no failed case; counted as 1 failure")
        failed = 1
    print(f"==> {name}: {passed} passed, {failed} failed, {skipped} skipped", flush=True)
    return passed, failed, skipped


def sum_reports(paths):
    """Print `N passed, N failed, N skipped` over JUnit reports; 1 if any failed."""
    totals = [0, 0, 0]
    for path in paths:
        counts = count_junit(path) if os.path.exists(path) else (0, 1, 0)
        if not os.path.exists(path):
            print(f"{path}: no report (the run died before writing it); counted as 1 failure")
        for i, n in enumerate(counts):
            totals[i] += n
    passed, failed, skipped = totals
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed or passed == 0 else 0


def tests_from(listing, first):
    """The full names of the tests in a `--gtest_list_tests` listing from
    `first` on, in the binary's order, joined into a gtest filter: the rest of
    a run that stopped at `first` (device time ran out)."""
    names, suite = [], None
    for line in listing.splitlines():
        if not line.strip() or line.startswith(("Cuda number", "Current device")):
            continue
        if not line.startswith(" "):
            suite = line.split("#")[0].strip()
        elif suite is not None:
            names.append(suite + line.split("#")[0].strip())
    if first not in names:
        raise ValueError("test %r is not in the listing (%d tests; e.g. %s)"
                         % (first, len(names), names[0] if names else "none"))
    return ":".join(names[names.index(first):])


def environment_for_tests(build, environ):
    """The environment both parts run in: the build's pycaffe and our package
    importable, Caffe's INFO logs off, and OpenBLAS's best kernels where it
    does not know the CPU (gencaffe.blas_core), so that the gtests run as the
    tools' caffe processes do."""
    env = dict(environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [os.path.join(build, "caffe-src", "python"), os.path.join(REPO, "python")] +
        ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["CAFFE_BUILD_DIR"] = build
    env.setdefault("GLOG_minloglevel", "2")
    core = blas_core.choose(os.path.join(build, "caffe", "tools", "caffe"), env)
    if core:
        print(f"==> OpenBLAS fell back to its generic kernels on this CPU: "
              f"OPENBLAS_CORETYPE={core} for the tests")
    return env


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", default=os.path.join(REPO, "build", "cpu"),
                        help="CMake build directory to test (default: build/cpu)")
    parser.add_argument("--gtest-filter", default=None,
                        help="gtest filter (default: all tests, minus *GPU* without a GPU)")
    parser.add_argument("--pytest-args", default="",
                        help="extra arguments for pytest, e.g. '-k hmc'")
    parser.add_argument("--print-gpu-filter", action="store_true",
                        help="print the gtest filter of the tests that need a GPU and exit")
    parser.add_argument("--sum-junit", nargs="+", metavar="XML",
                        help="only sum these JUnit reports (e.g. gtest shards) into the closing "
                             "line; a missing report counts as 1 failure")
    parser.add_argument("--tests-from", metavar="TEST",
                        help="read a --gtest_list_tests listing on stdin and print the filter "
                             "of its tests from TEST (e.g. InnerProductLayerTest/2."
                             "TestGradientTranspose) on, to finish a run that stopped there")
    args = parser.parse_args()
    if args.tests_from:
        try:
            print(tests_from(sys.stdin.read(), args.tests_from))
        except ValueError as err:
            sys.exit("run_tests: %s" % err)
        return 0
    if args.print_gpu_filter:
        print(GPU_TESTS)
        return 0
    if args.sum_junit:
        return sum_reports(args.sum_junit)

    build = os.path.abspath(args.build)
    source_root = os.path.join(build, "caffe-src")
    testbin = os.path.join(build, "caffe", "test", "test.testbin")
    for path, what in ((testbin, "gtest binary"), (source_root, "patched source tree")):
        if not os.path.exists(path):
            sys.exit(f"run_tests: {what} {path} not found: build first (make test does).")

    env = environment_for_tests(build, os.environ)

    gtest_filter = args.gtest_filter
    if gtest_filter is None:
        cuda = build_has_cuda(build)
        with_gpu = cuda and gpu_visible()
        gtest_filter = "*" if with_gpu else ("-" + GPU_TESTS if cuda else "-*GPU*")
        if not with_gpu:
            print("==> no CUDA build or no GPU visible: GPU gtests are skipped")

    totals = [0, 0, 0]
    with tempfile.TemporaryDirectory() as tmp:
        gtest_xml = os.path.join(tmp, "gtest.xml")
        pytest_xml = os.path.join(tmp, "pytest.xml")
        parts = [
            ("gtest (upstream Caffe + ours)",
             [testbin, f"--gtest_filter={gtest_filter}", f"--gtest_output=xml:{gtest_xml}"],
             gtest_xml, source_root),
            ("pytest tests/",
             [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
              f"--junitxml={pytest_xml}", os.path.join(REPO, "tests")] +
             args.pytest_args.split(),
             pytest_xml, REPO),
        ]
        for name, cmd, report, cwd in parts:
            for i, n in enumerate(run_part(name, cmd, report, env, cwd)):
                totals[i] += n
    passed, failed, skipped = totals
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed or passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
