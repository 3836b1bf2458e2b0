"""scripts/device_kit.py and scripts/gpu_checks.sh: packing a build, with pycaffe,
for a GPU machine that has none of Caffe's libraries.

The kit itself is only useful on a GPU machine, but what decides whether it
works there is checked here on a kit of the CPU build: which libraries go in,
that every library the binaries and pycaffe load resolves inside the kit, and
that the kit's caffe, gtests and pycaffe run from a clean directory.
"""
import json
import os
import re
import subprocess
import sys
import tarfile

import pytest

from conftest import BUILD, REPO

sys.path.insert(0, os.path.join(REPO, "scripts"))
import device_kit as db  # noqa: E402

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
    with pytest.raises(db.BundleError, match="make device-kit"):
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
def cpu_kit(tmp_path_factory):
    """A kit of the CPU build with pycaffe for this Python: its closure has the
    device build's and more (OpenCV), too big to carry, but the packing is the
    same, Boost.Python built from source included."""
    out_dir = tmp_path_factory.mktemp("kit")
    payload = tmp_path_factory.mktemp("payload")
    (payload / "note.txt").write_text("carried\n")
    archive, manifest, size = db.build_bundle(BUILD, str(out_dir), "/usr/local/cuda",
                                              require_cuda=False, xz_preset=0, size_limit=None,
                                              python=sys.executable,
                                              extra={"notes/note.txt": str(payload / "note.txt")})
    return out_dir, archive, manifest, size


def unpack(archive, where):
    with tarfile.open(archive) as tar:
        tar.extractall(where, filter="data")
    return where / "kit"


@needs_build
def test_real_kit_is_self_contained_and_runs(cpu_kit, tmp_path):
    out_dir, archive, manifest, size = cpu_kit
    assert os.listdir(out_dir) == ["kit.tar.xz"]
    assert os.path.getsize(archive) == size
    kit = unpack(archive, tmp_path / "x")
    assert json.loads((kit / "manifest.json").read_text())["source_root"] == \
        manifest["source_root"] == db.source_root_of(BUILD)
    assert manifest["python"] == "%d.%d.%d" % sys.version_info[:3]
    assert (kit / "src" / "src" / "caffe" / "test" / "test_data").is_dir()
    assert (kit / "payload" / "notes" / "note.txt").read_text() == "carried\n"
    # the C++ runtime apart, so that a Python keeps its own
    assert sorted(os.listdir(kit / "lib" / "cxx-runtime")) == ["libgcc_s.so.1", "libstdc++.so.6"]
    env = dict(os.environ, LD_LIBRARY_PATH=str(kit / "lib"))
    loaded = [kit / "bin" / "caffe", kit / "bin" / "test.testbin",
              kit / "python" / "caffe" / "_caffe.so"]
    for binary in loaded:
        out = subprocess.run(["ldd", str(binary)], env=env,
                             capture_output=True, text=True, check=True).stdout
        for soname, path in db.parse_ldd(out):
            if db.is_system_lib(soname) or db.is_cuda_toolkit_lib(path or "", "/usr/local/cuda") \
                    or soname.startswith(db.CXX_RUNTIME_PREFIXES):
                continue
            assert path and path.startswith(str(kit / "lib")), (binary, soname, path)
    run = subprocess.run([str(kit / "bin" / "caffe"), "--version"], env=env,
                         capture_output=True, text=True)
    assert run.returncode == 0 and "generative" in run.stdout


@needs_build
def test_kit_pycaffe_runs_a_net_from_a_clean_directory(cpu_kit, tmp_path):
    """The kit's pycaffe, with nothing of the build on the paths: forward and
    backward of LeNet, the input gradient HMC needs."""
    kit = unpack(cpu_kit[1], tmp_path / "x")
    code = ("import caffe, numpy as np; caffe.set_mode_cpu(); "
            "assert caffe.__file__.startswith(%r); "
            "n = caffe.Net(%r, caffe.TEST); n.blobs['data'].data[...] = 0.5; "
            "p = n.forward()['prob']; n.blobs['ip2'].diff[...] = 0; n.blobs['ip2'].diff[0, 3] = 1; "
            "n.backward(start='ip2'); print(round(float(p.sum()), 4), "
            "bool(np.abs(n.blobs['data'].diff).sum() > 0))"
            % (str(kit), os.path.join(REPO, "models", "lenet", "lenet_deploy.prototxt")))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "GLOG_minloglevel": "2",
           "LD_LIBRARY_PATH": str(kit / "lib"), "PYTHONPATH": str(kit / "python")}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         cwd=str(tmp_path))
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["1.0", "True"]


@needs_build
def test_over_the_size_limit_is_refused_and_leaves_nothing(tmp_path):
    with pytest.raises(db.BundleError, match="over the 1 MiB"):
        db.build_bundle(BUILD, str(tmp_path), "/usr/local/cuda", require_cuda=False,
                        xz_preset=0, size_limit=2**20)
    assert os.listdir(tmp_path) == []


def test_bad_payload_and_wheel_are_named(tmp_path):
    with pytest.raises(db.BundleError, match="expected NAME=PATH"):
        db.parse_add(["no-equals-sign"])
    with pytest.raises(db.BundleError, match=r"\.\./x"):
        db.parse_add(["../x=/tmp"])


def stand_in_gpu_env(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text("#!/bin/sh\necho 'GPU 0: stand-in'\n")
    (fake / "nvidia-smi").chmod(0o755)
    return dict(os.environ, OUT=str(tmp_path / "out"), PATH=f"{fake}:{os.environ['PATH']}",
                PYTHON=sys.executable)


@needs_build
def test_gpu_checks_runs_the_kit_suite_and_pycaffe(cpu_kit, tmp_path):
    """No GPU here: a stand-in nvidia-smi and the CPU kit. The script unpacks
    the kit, imports its pycaffe with this machine's Python, runs the
    GenerativeLoss gtests and the whole CPU suite in 3 shards (every test in
    exactly one), and reports the sum in one closing line."""
    env = stand_in_gpu_env(tmp_path)
    results = tmp_path / "out"
    run = subprocess.run(["bash", os.path.join(REPO, "scripts", "gpu_checks.sh"), str(cpu_kit[0]),
                          "--sections", "env,gen,suite", "--cpu-tests-only", "--jobs", "3"],
                         env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "GPU 0: stand-in" in (results / "gpu.txt").read_text()
    assert not (results / "failures.txt").exists()          # pycaffe imported
    xml = (results / "gtest_generative_loss.xml").read_text()
    tests = int(re.search(r'<testsuites tests="(\d+)"', xml).group(1))
    assert tests >= 16 and 'failures="0"' in xml and "GenerativeLoss" in xml
    assert "BernoulliSample" in xml
    summary = (results / "gtest_suite_summary.txt").read_text()
    import run_tests
    listed = subprocess.run([os.path.join(BUILD, "caffe", "test", "test.testbin"),
                             "--gtest_list_tests", "--gtest_filter=-" + run_tests.GPU_TESTS],
                            capture_output=True, text=True).stdout
    cpu_tests = sum(1 for line in listed.splitlines() if line.startswith("  "))
    assert int(summary.split()[0]) == cpu_tests and " 0 failed" in summary
    assert (results / "environment.txt").read_text().count("== ") >= 5


@needs_build
def test_gpu_checks_reports_a_failed_section(cpu_kit, tmp_path):
    """A section that cannot run (the loss benchmark wants a GPU) is reported and
    makes the exit status 1; the other sections still run."""
    env = stand_in_gpu_env(tmp_path)
    run = subprocess.run(["bash", os.path.join(REPO, "scripts", "gpu_checks.sh"), str(cpu_kit[0]),
                          "--sections", "bench,gen", "--bench-repeats", "1"],
                         env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 1
    failures = (tmp_path / "out" / "failures.txt").read_text()
    assert "bench_generative_loss" in failures
    assert (tmp_path / "out" / "gtest_generative_loss.xml").exists()


def test_gpu_checks_script_explains_a_missing_kit(tmp_path):
    script = os.path.join(REPO, "scripts", "gpu_checks.sh")
    assert subprocess.run(["bash", "-n", script]).returncode == 0
    run = subprocess.run(["bash", script, str(tmp_path / "nothing")], capture_output=True,
                         text=True, env=dict(os.environ, OUT=str(tmp_path / "out")))
    assert run.returncode == 2
    assert "make device-kit" in run.stderr
    run = subprocess.run(["bash", script, "--sections", "suite,coffee"], capture_output=True,
                         text=True)
    assert run.returncode == 2 and "unknown section 'coffee'" in run.stderr
    helped = subprocess.run(["bash", script, "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "--sections" in helped.stdout


LISTING = """Cuda number of devices: 0
Current device id: 0
AccuracyLayerTest/2.  # TypeParam = caffe::GPUDevice<float>
  TestSetup
  TestForward
InnerProductLayerTest/2.  # TypeParam = caffe::GPUDevice<float>
  TestGradientTranspose
  TestBackwardTranspose
CuDNNStatusTest.
  NamesTheError
"""


def test_tests_from_gives_the_rest_of_a_stopped_run():
    import run_tests
    assert run_tests.tests_from(LISTING, "InnerProductLayerTest/2.TestGradientTranspose") == (
        "InnerProductLayerTest/2.TestGradientTranspose:InnerProductLayerTest/2."
        "TestBackwardTranspose:CuDNNStatusTest.NamesTheError")
    assert run_tests.tests_from(LISTING, "AccuracyLayerTest/2.TestSetup").count(":") == 4
    with pytest.raises(ValueError, match="'Nope.Test' is not in the listing \\(5 tests"):
        run_tests.tests_from(LISTING, "Nope.Test")


@needs_build
def test_gpu_checks_names_an_unknown_first_gpu_test(cpu_kit, tmp_path):
    env = stand_in_gpu_env(tmp_path)
    run = subprocess.run(["bash", os.path.join(REPO, "scripts", "gpu_checks.sh"), str(cpu_kit[0]),
                          "--sections", "suite", "--gpu-tests-from", "Nope.Test"],
                         env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 1
    assert "--gpu-tests-from: Nope.Test is not a GPU test" in (
        tmp_path / "out" / "failures.txt").read_text()
    assert "is not in the listing" in run.stderr


def test_make_device_kit_builds_the_cpu_pycaffe_before_the_bench_nets(tmp_path):
    """From a fresh clone (no build directory) `make device-kit` once failed:
    tools/bench_nets.py --prepare generates nets with pycaffe, which only the
    CPU build makes. `make -n` (recursive makes still print their commands)
    shows the CPU build before the generator, and the generator pointed at it."""
    cpu, kit = tmp_path / "cpu", tmp_path / "kit"
    out = subprocess.run(["make", "-n", "device-kit", "KIT_PYTHON=" + sys.executable,
                          "CPU_BUILD=%s" % cpu, "KIT_BUILD=%s" % kit],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    build = next(i for i, l in enumerate(lines) if l.startswith("cmake --build %s " % cpu))
    prepare = next(i for i, l in enumerate(lines) if "tools/bench_nets.py --prepare" in l)
    assert build < prepare
    assert lines[prepare].startswith("CAFFE_BUILD_DIR=%s " % cpu)
    assert not cpu.exists() and not kit.exists()
