"""The GenerativeLoss export (`make export-patch` = tools/export_patch.py) on a
clean upstream tree.

The tree is the pinned upstream's orig tarball as BVLC released it (commit
99bd997), without Debian's patches: the series must apply to a plain BVLC
checkout. The series is applied three ways (plain `git am` on a
git-initialised copy, plain `patch -p1` with the combined diff, and the shipped
apply_generative_loss.py) and must give the same files. The `git am` tree is
then built (CPU: libcaffe, Caffe's test binary restricted to the layer's test
by Caffe's own -DBUILD_only_tests, and the caffe tool), the layer's gtest is
run, and a small net with `type: "GenerativeLoss"` is trained by
`caffe train`. The layer's .cu is compiled with nvcc against the same tree
when nvcc is installed. One build fix outside the series is needed to build
that tree here: caffe/patches/protobuf-total-bytes-limit.patch (protobuf 3.21
dropped the two-argument SetTotalBytesLimit); it is applied as an uncommitted
change after `git am`.

Cost: the builds go through ccache with CCACHE_BASEDIR set to the test's work
folder, so only the first run on a machine compiles libcaffe (about 6 minutes
on 2 busy cores); later runs take about half a minute. The build folder is
deleted at the end. Skipped, with the reason, when the pinned upstream cannot
be fetched or cmake is missing.
"""
import os
import re
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "python"))

from gencaffe.patch_export import apply_generative_loss as receiver  # noqa: E402
from gencaffe.patch_export import export as exporter  # noqa: E402

EXPORT = os.path.join(REPO, "tools", "export_patch.py")
FETCH = os.path.join(REPO, "scripts", "fetch_upstream.sh")
BUILD_FIX = os.path.join(REPO, "caffe", "patches", "protobuf-total-bytes-limit.patch")
NEW_FILES = exporter.LAYER_FILES + exporter.TEST_FILES
JOBS = str(os.cpu_count() or 2)

GIT_ENV = dict(os.environ, GIT_AUTHOR_NAME="Receiver", GIT_AUTHOR_EMAIL="receiver@example.invalid",
               GIT_COMMITTER_NAME="Receiver", GIT_COMMITTER_EMAIL="receiver@example.invalid",
               GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull)


def run(cmd, cwd=None, env=None, timeout=600):
    return subprocess.run(cmd, cwd=cwd, env=env or GIT_ENV, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, timeout=timeout)


def ok(cmd, **kw):
    p = run(cmd, **kw)
    assert p.returncode == 0, "%s failed:\n%s" % (" ".join(cmd), p.stdout[-4000:])
    return p.stdout


@pytest.fixture(scope="module")
def orig_tarball():
    cache = exporter.upstream_cache(REPO)
    p = run([FETCH, cache], timeout=900)
    if p.returncode != 0:
        pytest.skip("the pinned upstream Caffe cannot be fetched here: %s"
                    % (p.stdout.strip().splitlines() or ["?"])[-1])
    return os.path.join(cache, exporter.read_pin(REPO)["UPSTREAM_ORIG"])


@pytest.fixture(scope="module")
def dist(tmp_path_factory, orig_tarball):
    out = tmp_path_factory.mktemp("export") / "generative-loss-patch"
    ok([sys.executable, EXPORT, "--out", str(out)])
    return out


def series_names(dist):
    return [name for name, _ in receiver.read_series(str(dist))]


def patches(dist):
    return [str(dist / n) for n in series_names(dist)]


def unpack(tarball, dest):
    """The orig tarball (it has no top folder) into dest."""
    os.makedirs(str(dest))
    ok(["tar", "-xzf", tarball, "-C", str(dest)])
    return dest


def git_tree(tarball, dest):
    unpack(tarball, dest)
    ok(["git", "init", "-q", "--template="], cwd=dest)
    ok(["git", "add", "-A"], cwd=dest)
    ok(["git", "commit", "-q", "-m", "BVLC Caffe as released"], cwd=dest)
    return dest


def apply_script(dist, *args):
    return run([sys.executable, str(dist / "apply_generative_loss.py")] + [str(a) for a in args])


def same_files(a, b):
    p = run(["diff", "-r", "-q", "-x", ".git", str(a), str(b)])
    assert p.returncode == 0, "trees differ:\n" + p.stdout[-3000:]


def head(root):
    return ok(["git", "rev-parse", "HEAD"], cwd=root).strip()


@pytest.fixture(scope="module")
def am_tree(tmp_path_factory, orig_tarball, dist):
    """A git-initialised clean tree with the series applied by plain `git am`."""
    root = git_tree(orig_tarball, tmp_path_factory.mktemp("am") / "caffe")
    ok(["git", "am"] + patches(dist), cwd=root)
    return root


# ---- the export --------------------------------------------------------------------

def test_series_is_generated_from_this_repository(dist, tmp_path):
    names = series_names(dist)
    assert len(names) == 3
    added_files = {}
    proto_added = []
    for name in names:
        text = (dist / name).read_text()
        # git format-patch mail headers: git am needs them
        assert text.startswith("From 0000000000000000000000000000000000000000 ")
        assert re.search(r"(?m)^From: .+", text) and re.search(r"(?m)^Date: .+", text)
        assert re.search(r"(?m)^Subject: \[PATCH %d/3\] " % (names.index(name) + 1), text)
        for fd in receiver.split_patch(text):
            if fd.path == exporter.PROTO:
                proto_added += fd.added_lines()
            else:
                assert fd.new, fd.path
                added_files[fd.path] = fd.new_content()
    assert sorted(added_files) == sorted(NEW_FILES)
    for path, content in added_files.items():
        committed = ok(["git", "show", "HEAD:caffe/" + path], cwd=REPO)
        assert content == committed, path
    # the proto lines are our proto patch's, unchanged but for the docs link
    ours = ok(["git", "show", "HEAD:" + exporter.PROTO_PATCH], cwd=REPO)
    ours_added = [l[1:] for l in ours.splitlines(True) if l.startswith("+") and not l.startswith("+++")]
    ours_added = [l.replace("docs/multi_gpu.md", "Generative Caffe's docs/multi_gpu.md") for l in ours_added]
    assert sorted(l for l in proto_added if l.strip()) == sorted(l for l in ours_added if l.strip())
    assert any("generative_loss_param = 7001;" in l for l in proto_added)
    for field in ("semi_supervised", "unlabeled_label", "unlabeled_weight", "class_prior"):
        assert any(re.search(r"\b%s = \d+" % field, l) for l in proto_added), field
    # the shipped script is the repository's, and the README names what is there
    assert (dist / "apply_generative_loss.py").read_text() == open(receiver.__file__.replace(".pyc", ".py")).read()
    readme = (dist / "README.md").read_text()
    assert "GenerativeLoss" in readme and "7001" in readme and "{{" not in readme
    for name in names:
        assert name in readme
    # the same commit gives the same bytes
    again = tmp_path / "again"
    ok([sys.executable, EXPORT, "--out", str(again)])
    assert sorted(os.listdir(str(again))) == sorted(os.listdir(str(dist)))
    for name in os.listdir(str(dist)):
        assert (again / name).read_bytes() == (dist / name).read_bytes(), name


def test_export_refuses_a_revision_without_the_layer(tmp_path):
    first = ok(["git", "rev-list", "--max-parents=0", "HEAD"], cwd=REPO).split()[0]
    p = run([sys.executable, EXPORT, "--out", str(tmp_path / "out"), "--rev", first])
    assert p.returncode == 1
    assert "is not in commit %s" % first[:12] in p.stdout
    assert not (tmp_path / "out").exists()


# ---- applying it -------------------------------------------------------------------

def test_git_am_patch_and_the_script_give_the_same_tree(am_tree, dist, orig_tarball, tmp_path):
    log = ok(["git", "log", "--reverse", "--format=%s", "HEAD~3..HEAD"], cwd=am_tree).splitlines()
    assert log[0].startswith("caffe.proto: GenerativeLossParameter")
    assert len(log) == 3 and ok(["git", "status", "--porcelain"], cwd=am_tree) == ""
    for path in NEW_FILES:
        assert (am_tree / path).is_file()

    by_patch = unpack(orig_tarball, tmp_path / "patch")
    ok(["patch", "-p1", "--batch", "-i", str(dist / exporter.DIFF_NAME)], cwd=by_patch)
    same_files(am_tree, by_patch)

    by_script = unpack(orig_tarball, tmp_path / "script")
    p = apply_script(dist, "--check", by_script)
    assert p.returncode == 0 and "dry run passed; nothing changed" in p.stdout
    assert not (by_script / NEW_FILES[0]).exists()
    p = apply_script(dist, by_script)
    assert p.returncode == 0 and "applied 0001-" in p.stdout, p.stdout
    same_files(am_tree, by_script)


def test_applying_twice_says_so_and_changes_nothing(am_tree, dist, tmp_path):
    tree = tmp_path / "caffe"
    shutil.copytree(str(am_tree), str(tree), symlinks=True)
    before = head(tree)
    # plain git am: git's own message, then --abort restores the branch
    p = run(["git", "am"] + patches(dist), cwd=tree)
    assert p.returncode != 0 and "src/caffe/proto/caffe.proto: patch does not apply" in p.stdout
    ok(["git", "am", "--abort"], cwd=tree)
    # the script: a no-op, saying so
    for args in (["--git"], [], ["--check"]):
        p = apply_script(dist, *(args + [tree]))
        assert p.returncode == 0, p.stdout
        assert "already has the whole series; nothing to do" in p.stdout
    assert head(tree) == before and ok(["git", "status", "--porcelain"], cwd=tree) == ""
    # plain patch -p1 (non-interactive): patch's own message
    p = run(["patch", "-p1", "--forward", "--batch", "-i", str(dist / exporter.DIFF_NAME)], cwd=tree)
    assert p.returncode != 0 and "Reversed (or previously applied) patch detected" in p.stdout
    assert ok(["git", "status", "--porcelain", "--untracked-files=no"], cwd=tree) == ""


def add_conflicting_field(root, number=7001):
    """A fork's own field `number` at the end of LayerParameter and its message
    at the end of caffe.proto (where forks usually add theirs); returns its line."""
    proto = root / exporter.PROTO
    lines = proto.read_text().splitlines(True)
    at = next(i for i, l in enumerate(lines) if "window_data_param = 129;" in l) + 1
    lines.insert(at, "  optional FooParameter foo_param = %d;\n" % number)
    lines.append("\nmessage FooParameter {\n  optional int32 x = 1;\n}\n")
    proto.write_text("".join(lines))
    return at + 1


def protoc(root, out):
    os.makedirs(str(out), exist_ok=True)
    return run(["protoc", "-I", str(root / "src"), "--cpp_out", str(out), str(root / exporter.PROTO)])


def test_a_taken_field_number_is_named_and_another_can_be_chosen(dist, orig_tarball, tmp_path):
    tree = unpack(orig_tarball, tmp_path / "fork")
    line = add_conflicting_field(tree)
    proto_before = (tree / exporter.PROTO).read_text()
    for args in (["--check"], [], ["--git"]):
        p = apply_script(dist, *(args + [tree]))
        assert p.returncode == 1
        assert ("LayerParameter already uses field number 7001 for foo_param "
                "(src/caffe/proto/caffe.proto line %d); rerun with --field 7002" % line) in p.stdout
    assert (tree / exporter.PROTO).read_text() == proto_before
    assert not any((tree / f).exists() for f in NEW_FILES)

    p = apply_script(dist, "--field", "7002", tree)
    assert p.returncode == 0, p.stdout
    proto = (tree / exporter.PROTO).read_text()
    assert "optional GenerativeLossParameter generative_loss_param = 7002;" in proto
    assert "Field 7002 because this tree already" in proto
    assert all((tree / f).is_file() for f in NEW_FILES)
    # a second run keeps the tree's number and does nothing
    p = apply_script(dist, tree)
    assert p.returncode == 0 and "nothing to do" in p.stdout
    if shutil.which("protoc"):
        p = protoc(tree, tmp_path / "pb")
        assert p.returncode == 0, p.stdout

    # with plain patch -p1 it applies, and protoc is what stops the build
    plain = unpack(orig_tarball, tmp_path / "plain")
    add_conflicting_field(plain)
    ok(["patch", "-p1", "--batch", "-i", str(dist / exporter.DIFF_NAME)], cwd=plain)
    if shutil.which("protoc"):
        p = protoc(plain, tmp_path / "pb2")
        assert p.returncode != 0
        assert 'Field number 7001 has already been used in "caffe.LayerParameter"' in p.stdout


def test_a_different_version_is_refused_and_a_partial_one_completed(am_tree, dist, orig_tarball, tmp_path):
    # another version of the layer's code
    changed = unpack(orig_tarball, tmp_path / "changed")
    ok(["patch", "-p1", "--batch", "-i", str(dist / exporter.DIFF_NAME)], cwd=changed)
    cpp = changed / "src/caffe/layers/generative_loss_layer.cpp"
    cpp.write_text(cpp.read_text() + "// local change\n")
    p = apply_script(dist, changed)
    assert p.returncode == 1
    assert "src/caffe/layers/generative_loss_layer.cpp exists with other content" in p.stdout

    # another version of the parameter message
    old_msg = unpack(orig_tarball, tmp_path / "old_msg")
    ok(["patch", "-p1", "--batch", "-i", str(dist / exporter.DIFF_NAME)], cwd=old_msg)
    proto = old_msg / exporter.PROTO
    proto.write_text(proto.read_text().replace("  repeated float class_prior = 4;\n", ""))
    p = apply_script(dist, old_msg)
    assert p.returncode == 1 and "has other fields than this series'" in p.stdout

    # only the proto change there (e.g. added by hand): the rest is added
    partial = unpack(orig_tarball, tmp_path / "partial")
    ok(["patch", "-p1", "--batch", "-i", patches(dist)[0]], cwd=partial)
    p = apply_script(dist, partial)
    assert p.returncode == 0, p.stdout
    assert "0001-" in p.stdout and "already applied" in p.stdout
    same_files(am_tree, partial)

    # one of the layer's files missing: refused, naming both
    half = unpack(orig_tarball, tmp_path / "half")
    ok(["patch", "-p1", "--batch", "-i", str(dist / exporter.DIFF_NAME)], cwd=half)
    os.unlink(str(half / "src/caffe/layers/generative_loss_layer.cu"))
    p = apply_script(dist, half)
    assert p.returncode == 1 and "is partly in the tree" in p.stdout
    assert "src/caffe/layers/generative_loss_layer.cu missing" in p.stdout


def test_not_a_caffe_tree(dist, tmp_path):
    p = apply_script(dist, tmp_path)
    assert p.returncode == 1
    assert "does not look like a Caffe source tree (BVLC layout): missing src/caffe/proto/caffe.proto" in p.stdout


def test_git_mode_into_a_subfolder_of_a_repository(dist, orig_tarball, tmp_path):
    repo = tmp_path / "monorepo"
    unpack(orig_tarball, repo / "third_party" / "caffe")
    ok(["git", "init", "-q", "--template="], cwd=repo)
    ok(["git", "add", "-A"], cwd=repo)
    ok(["git", "commit", "-q", "-m", "vendored Caffe"], cwd=repo)
    p = apply_script(dist, "--git", repo / "third_party" / "caffe")
    assert p.returncode == 0, p.stdout
    assert len(ok(["git", "log", "--format=%s"], cwd=repo).splitlines()) == 4
    for path in NEW_FILES:
        assert (repo / "third_party" / "caffe" / path).is_file()
    assert ok(["git", "status", "--porcelain"], cwd=repo) == ""


# ---- building it -------------------------------------------------------------------

@pytest.fixture(scope="module")
def built(am_tree):
    """am_tree (+ the build fix) built: libcaffe, test.testbin with only the
    layer's test, the caffe tool. Returns (source, build folder)."""
    if not shutil.which("cmake"):
        pytest.skip("cmake is not installed (make deps)")
    work = am_tree.parent
    build = work / "build"
    ok(["patch", "-p1", "--batch", "--no-backup-if-mismatch", "-i", BUILD_FIX], cwd=am_tree)
    env = dict(os.environ, CCACHE_BASEDIR=str(work))
    launcher = ["-DCMAKE_CXX_COMPILER_LAUNCHER=ccache"] if shutil.which("ccache") else []
    ok(["cmake", "-S", str(am_tree), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
        "-DCPU_ONLY=ON", "-DBLAS=Open", "-DUSE_OPENCV=OFF", "-DUSE_LEVELDB=OFF",
        "-DBUILD_python=OFF", "-DBUILD_docs=OFF", "-DBUILD_matlab=OFF",
        "-DBUILD_only_tests=generative_loss_layer"] + launcher, env=env)
    ok(["nice", "-n", "15", "cmake", "--build", str(build), "-j", JOBS,
        "--target", "caffe", "test.testbin", "caffe.bin"], env=env, timeout=3600)
    yield am_tree, build
    shutil.rmtree(str(build), ignore_errors=True)


def test_the_layers_gtest_passes_on_the_clean_tree(built):
    src, build = built
    binary = str(build / "test" / "test.testbin")
    listed = ok([binary, "--gtest_list_tests"], cwd=src)
    cases = re.findall(r"(?m)^(\S+)\.$", listed)
    tests = re.findall(r"(?m)^  (\S+)", listed)
    assert cases and all("GenerativeLoss" in c for c in cases), cases  # only our test was built
    assert any(c.startswith("GenerativeLossDeathTest") for c in cases)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    out = ok([binary, "--gtest_filter=*GenerativeLoss*"], cwd=src, env=env)
    assert "[  PASSED  ] %d tests." % len(tests) in out, out[-3000:]
    assert "FAILED" not in out


NET = """name: "two_clusters_gg"
layer { name: "a" type: "DummyData" top: "data_a" top: "label_a"
  dummy_data_param { data_filler { type: "gaussian" mean: 1 std: 1 }
                     data_filler { type: "constant" value: 0 }
                     shape { dim: 8 dim: 4 } shape { dim: 8 } } }
layer { name: "b" type: "DummyData" top: "data_b" top: "label_b"
  dummy_data_param { data_filler { type: "gaussian" mean: -1 std: 1 }
                     data_filler { type: "constant" value: 1 }
                     shape { dim: 8 dim: 4 } shape { dim: 8 } } }
layer { name: "data" type: "Concat" bottom: "data_a" bottom: "data_b" top: "data"
  concat_param { axis: 0 } }
layer { name: "label" type: "Concat" bottom: "label_a" bottom: "label_b" top: "label"
  concat_param { axis: 0 } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 0.01 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"""

SOLVER = """net: "net.prototxt"
base_lr: 0.1
momentum: 0.9
lr_policy: "fixed"
max_iter: 60
display: 1
solver_mode: CPU
random_seed: 1
snapshot_after_train: false
"""


def test_a_net_trains_with_the_one_word_change(built, tmp_path):
    src, build = built
    # SoftmaxWithLoss -> GenerativeLoss, plus the optional ESS top
    net = NET.replace('type: "SoftmaxWithLoss"', 'type: "GenerativeLoss"').replace(
        'top: "loss" }', 'top: "loss" top: "ess" }')
    assert net != NET
    (tmp_path / "net.prototxt").write_text(net)
    (tmp_path / "solver.prototxt").write_text(SOLVER)
    env = dict(os.environ, GLOG_minloglevel="0", GLOG_logtostderr="1", OPENBLAS_NUM_THREADS="1")
    out = ok([str(build / "tools" / "caffe"), "train", "-solver", "solver.prototxt"],
             cwd=tmp_path, env=env)
    assert "Optimization Done." in out
    loss = [float(v) for v in re.findall(r"Iteration \d+ \([^)]*\), loss = (\S+)", out)]
    ess = [float(v) for v in re.findall(r"Train net output #\d+: ess = (\S+)", out)]
    assert len(loss) == 60 and len(ess) == 60
    # the two clusters separate: the loss falls and the ESS with it
    assert ess[0] > 0.99
    assert sum(loss[-10:]) / 10 < loss[0] - 0.2, loss
    assert sum(ess[-10:]) / 10 < 0.8, ess


def nvcc():
    return shutil.which("nvcc") or next(
        (p for p in ("/usr/local/cuda/bin/nvcc",) if os.access(p, os.X_OK)), None)


def test_the_cu_file_compiles_against_the_clean_tree(built, tmp_path):
    """Without any of Generative Caffe's CUDA patches (they touch Caffe's CMake
    and common.cpp, not what the layer includes). Compile only: no GPU here."""
    compiler = nvcc()
    if not compiler:
        pytest.skip("nvcc is not installed: the CUDA code of the layer is not compiled")
    src, build = built
    work = src.parent  # paths relative to it, so that ccache hits across runs
    s, b = os.path.relpath(str(src), str(work)), os.path.relpath(str(build), str(work))
    cmd = [compiler, "-c", "-m64", "-gencode", "arch=compute_90,code=sm_90", "-Xcompiler", "-fPIC",
           "-I%s/include" % s, "-I%s/src" % s, "-I%s/include" % b, "-I/usr/include/hdf5/serial",
           "%s/src/caffe/layers/generative_loss_layer.cu" % s,
           "-o", str(tmp_path / "generative_loss_layer.cu.o")]
    if shutil.which("ccache"):
        cmd = ["ccache"] + cmd
    # ccache hashes nvcc's working directory unless told not to (nothing of it
    # goes into the object without -g)
    ok(["nice", "-n", "15"] + cmd, cwd=work,
       env=dict(os.environ, CCACHE_BASEDIR=str(work), CCACHE_NOHASHDIR="1"))
    symbols = ok(["nm", "-C", str(tmp_path / "generative_loss_layer.cu.o")])
    assert "caffe::GenerativeLossLayer<float>::Forward_gpu" in symbols
    assert "caffe::GenerativeLossLayer<double>::Backward_gpu" in symbols
