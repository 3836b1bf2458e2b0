"""tools/device_bundle.py and tools/gpu_checks.sh: packing a build for a GPU machine.

The bundle itself is only useful on a GPU machine, but what decides whether it
works there is checked here: which libraries go in, that every library the
binaries load resolves inside the bundle, and that the bundled caffe runs.
"""
import json
import os
import re
import subprocess
import sys
import tarfile

import pytest

from conftest import BUILD, REPO

sys.path.insert(0, os.path.join(REPO, "tools"))
import device_bundle as db  # noqa: E402

LDD_SAMPLE = """\
\tlinux-vdso.so.1 (0x00007ffd6b3f2000)
\tlibcaffe.so.1.0.0 => /b/caffe/lib/libcaffe.so.1.0.0 (0x00007f0d1c000000)
\tlibglog.so.1 => /lib/x86_64-linux-gnu/libglog.so.1 (0x00007f0d1bf00000)
\tlibcublas.so.13 => /opt/cuda/lib64/libcublas.so.13 (0x00007f0d10000000)
\tlibm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x00007f0d0f000000)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0d0e000000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007f0d1c400000)
"""


def test_parse_ldd_reads_every_form_of_line():
    libs = dict(db.parse_ldd(LDD_SAMPLE + "\tlibgone.so.2 => not found\n"))
    assert libs["libglog.so.1"] == "/lib/x86_64-linux-gnu/libglog.so.1"
    assert libs["linux-vdso.so.1"] is None
    assert libs["ld-linux-x86-64.so.2"] == "/lib64/ld-linux-x86-64.so.2"
    assert libs["libgone.so.2"] is None
    assert len(libs) == 8


def test_bundle_leaves_out_the_c_library_and_the_cuda_toolkit(tmp_path):
    cuda = tmp_path / "cuda"
    (cuda / "lib64").mkdir(parents=True)
    (cuda / "lib64" / "libcublas.so.13").write_bytes(b"")
    text = LDD_SAMPLE.replace("/opt/cuda", str(cuda))
    chosen = db.libraries_to_bundle([text], str(cuda))
    assert sorted(chosen) == ["libcaffe.so.1.0.0", "libglog.so.1"]
    assert db.cuda_libraries([text], str(cuda)) == ["libcublas.so.13"]


def test_unresolved_library_is_an_error_naming_it():
    with pytest.raises(db.BundleError, match="libgone.so.2"):
        db.libraries_to_bundle([LDD_SAMPLE + "\tlibgone.so.2 => not found\n"], "/usr/local/cuda")


def test_cpu_only_build_is_refused(tmp_path):
    (tmp_path / "CMakeCache.txt").write_text("CPU_ONLY:BOOL=ON\n")
    with pytest.raises(db.BundleError, match="CPU-only"):
        db.check_cuda_build(str(tmp_path))
    with pytest.raises(db.BundleError, match="make device-bundle"):
        db.check_cuda_build(str(tmp_path / "missing"))


def test_source_root_comes_from_the_build_config(tmp_path):
    (tmp_path / "caffe").mkdir()
    (tmp_path / "caffe" / "caffe_config.h").write_text(
        '/* x */\n#define SOURCE_FOLDER "/w/build/cuda-device/caffe-src"\n')
    assert db.source_root_of(str(tmp_path)) == "/w/build/cuda-device/caffe-src"


def _built(build):
    return all(os.path.isfile(os.path.join(build, "caffe", sub))
               for sub in ("tools/caffe", "test/test.testbin"))


needs_build = pytest.mark.skipif(not _built(BUILD), reason="needs caffe and test.testbin built")


@pytest.fixture(scope="module")
def cpu_bundle(tmp_path_factory):
    """A bundle of the CPU build: its closure has the device build's and more
    (OpenCV, pycaffe), too big to carry, but the packing is the same."""
    out_dir = tmp_path_factory.mktemp("bundle")
    archive, manifest, size = db.build_bundle(BUILD, str(out_dir), "/usr/local/cuda",
                                              require_cuda=False, xz_preset=0, size_limit=None)
    return out_dir, archive, manifest, size


@needs_build
def test_real_bundle_is_self_contained_and_runs(cpu_bundle, tmp_path):
    out_dir, archive, manifest, size = cpu_bundle
    assert os.listdir(out_dir) == ["bundle.tar.xz"]
    assert os.path.getsize(archive) == size
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    bundle = tmp_path / "x" / "bundle"
    assert json.loads((bundle / "manifest.json").read_text())["source_root"] == \
        manifest["source_root"] == db.source_root_of(BUILD)
    assert (bundle / "src" / "src" / "caffe" / "test" / "test_data").is_dir()
    env = dict(os.environ, LD_LIBRARY_PATH=str(bundle / "lib"))
    for binary in ("caffe", "test.testbin"):
        out = subprocess.run(["ldd", str(bundle / "bin" / binary)], env=env,
                             capture_output=True, text=True, check=True).stdout
        for soname, path in db.parse_ldd(out):
            if db.is_system_lib(soname) or db.is_cuda_toolkit_lib(path or "", "/usr/local/cuda"):
                continue
            assert path and path.startswith(str(bundle / "lib")), (binary, soname, path)
    run = subprocess.run([str(bundle / "bin" / "caffe"), "--version"], env=env,
                         capture_output=True, text=True)
    assert run.returncode == 0 and "generative" in run.stdout


@needs_build
def test_over_the_size_limit_is_refused_and_leaves_nothing(tmp_path):
    with pytest.raises(db.BundleError, match="over the 1 MiB"):
        db.build_bundle(BUILD, str(tmp_path), "/usr/local/cuda", require_cuda=False,
                        xz_preset=0, size_limit=2**20)
    assert os.listdir(tmp_path) == []


@needs_build
def test_gpu_checks_script_runs_the_bundled_gtests(cpu_bundle, tmp_path):
    # No GPU here: a stand-in nvidia-smi, and the CPU bundle, whose gtests are the
    # GenerativeLoss CPU ones. The GPU benchmark step must then fail, and say so.
    out_dir = cpu_bundle[0]
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text("#!/bin/sh\necho 'GPU 0: stand-in'\n")
    (fake / "nvidia-smi").chmod(0o755)
    results = tmp_path / "out"
    env = dict(os.environ, OUT=str(results), PATH=f"{fake}:{os.environ['PATH']}")
    run = subprocess.run(["bash", os.path.join(REPO, "tools", "gpu_checks.sh"), str(out_dir)],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 1, run.stdout + run.stderr       # the --gpu benchmark
    assert "GPU 0: stand-in" in (results / "gpu.txt").read_text()
    xml = (results / "gtest_generative_loss.xml").read_text()
    tests = int(re.search(r'<testsuites tests="(\d+)"', xml).group(1))
    assert tests >= 16 and 'failures="0"' in xml and "GenerativeLoss" in xml
    assert "results in" in run.stdout


def test_gpu_checks_script_explains_a_missing_bundle(tmp_path):
    script = os.path.join(REPO, "tools", "gpu_checks.sh")
    assert subprocess.run(["bash", "-n", script]).returncode == 0
    run = subprocess.run(["bash", script, str(tmp_path / "nothing")], capture_output=True,
                         text=True, env=dict(os.environ, OUT=str(tmp_path / "out")))
    assert run.returncode == 2
    assert "make device-bundle" in run.stderr
    helped = subprocess.run(["bash", script, "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "--all" in helped.stdout


@needs_build
def test_gpu_checks_splits_the_whole_suite_into_shards(cpu_bundle, tmp_path):
    """--all --jobs 3: every gtest runs in exactly one of 3 shards, and the sum
    is reported in one closing line (here the CPU suite; GPU tests need a GPU)."""
    out_dir = cpu_bundle[0]
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text("#!/bin/sh\necho 'GPU 0: stand-in'\n")
    (fake / "nvidia-smi").chmod(0o755)
    results = tmp_path / "out"
    env = dict(os.environ, OUT=str(results), PATH=f"{fake}:{os.environ['PATH']}")
    run = subprocess.run(["bash", os.path.join(REPO, "tools", "gpu_checks.sh"), str(out_dir),
                          "--all", "--jobs", "3", "--gtest-filter", "-*GPU*", "--no-bench"],
                         env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summary = (results / "gtest_all_summary.txt").read_text()
    passed = int(summary.split()[0])
    listed = subprocess.run([os.path.join(BUILD, "caffe", "test", "test.testbin"),
                             "--gtest_list_tests", "--gtest_filter=-*GPU*"],
                            capture_output=True, text=True).stdout
    assert passed == sum(1 for line in listed.splitlines() if line.startswith("  "))
    assert " 0 failed" in summary
    assert (results / "environment.txt").read_text().count("== ") >= 5
