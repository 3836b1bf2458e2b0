"""tools/last_snapshot.py: the stage-2 -weights without max_iter arithmetic.
The final snapshot is found from the solver (Caffe's prefix rules), an
unfinished stage 1 is refused naming the missing file, and the command of the
README works as written (with a stand-in caffe file layout)."""
import importlib.util
import os
import subprocess
import sys

import pytest

pytest.importorskip("caffe.proto.caffe_pb2", reason="pycaffe not built (solvers need it)")

from gencaffe import snapshots  # noqa: E402
from gencaffe.solver_config import load_solver  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(REPO, "tools", "last_snapshot.py")


def run(*args, cwd):
    """The tool's main() in this process, from cwd: (returncode, stdout, stderr)."""
    spec = importlib.util.spec_from_file_location("last_snapshot_cli", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    import contextlib
    import io
    out, err = io.StringIO(), io.StringIO()
    here = os.getcwd()
    os.chdir(str(cwd))
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = module.main(list(args))
    finally:
        os.chdir(here)
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"w")


def test_committed_stage1_solver_gives_its_max_iter_snapshot(tmp_path):
    """solvers/lenet_gg_dg_stage1.prototxt, run from a root with snapshots of
    iterations 938 .. 15008 (938 < 15008 < 9380 as strings: sorted by number)."""
    (tmp_path / "solvers").mkdir()
    stage1 = os.path.join(REPO, "solvers", "lenet_gg_dg_stage1.prototxt")
    (tmp_path / "solvers" / "stage1.prototxt").write_text(open(stage1).read())
    solver = load_solver(stage1)
    prefix = tmp_path / solver.snapshot_prefix
    for iteration in (938, 9380):
        touch(tmp_path / ("%s_iter_%d.caffemodel" % (solver.snapshot_prefix, iteration)))
    proc = run("solvers/stage1.prototxt", cwd=tmp_path)
    assert proc.returncode == 1 and proc.stdout == ""
    assert ("solvers/stage1.prototxt has not finished: no %s_iter_15008.caffemodel (max_iter "
            "15008) (relative to the current directory %s); the newest there is "
            "%s_iter_9380.caffemodel" % (solver.snapshot_prefix, tmp_path, solver.snapshot_prefix)
            in proc.stderr)
    proc = run("solvers/stage1.prototxt", "--newest", cwd=tmp_path)
    assert proc.stdout == "%s_iter_9380.caffemodel\n" % solver.snapshot_prefix
    touch(tmp_path / ("%s_iter_15008.caffemodel" % solver.snapshot_prefix))
    touch(tmp_path / ("%s_iter_15008.solverstate" % solver.snapshot_prefix))
    proc = run("solvers/stage1.prototxt", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout == "%s_iter_15008.caffemodel\n" % solver.snapshot_prefix
    # a prefix: the newest by iteration number, not by name
    touch(tmp_path / ("%s_iter_99.caffemodel" % solver.snapshot_prefix))
    assert run(str(prefix), cwd=tmp_path).stdout == "%s_iter_15008.caffemodel\n" % prefix


def test_caffes_prefix_rules_and_hdf5(tmp_path):
    no_prefix = tmp_path / "s1.prototxt"
    no_prefix.write_text("max_iter: 7\n")
    assert snapshots.effective_prefix(load_solver(str(no_prefix)), str(no_prefix)) == \
        str(tmp_path / "s1")
    (tmp_path / "snaps").mkdir()
    folder = tmp_path / "s2.prototxt"
    folder.write_text('max_iter: 7\nsnapshot_prefix: "%s"\nsnapshot_format: HDF5\n'
                      % (tmp_path / "snaps"))
    touch(tmp_path / "snaps" / "s2_iter_7.caffemodel.h5")
    assert snapshots.final_of_solver(str(folder)) == str(tmp_path / "snaps" / "s2_iter_7.caffemodel.h5")
    off = tmp_path / "s3.prototxt"
    off.write_text('max_iter: 7\nsnapshot_after_train: false\nsnapshot_prefix: "x"\n')
    with pytest.raises(snapshots.SnapshotError, match="snapshot_after_train: false"):
        snapshots.final_of_solver(str(off))
    net = tmp_path / "net.prototxt"
    net.write_text('layer { name: "a" type: "Input" }\n')
    with pytest.raises(snapshots.SnapshotError, match="net.prototxt is not a Caffe solver"):
        snapshots.final_of_solver(str(net))


def test_nothing_under_a_prefix_is_an_error(tmp_path):
    proc = run("nowhere/lenet", cwd=tmp_path)
    assert proc.returncode == 1 and proc.stdout == ""
    assert "no snapshot nowhere/lenet_iter_N.caffemodel (relative to the current directory" \
        in proc.stderr


def test_readme_stage2_command_passes_the_final_snapshot(tmp_path):
    """W=$(tools/last_snapshot.py stage1) && caffe ... -weights "$W": a stand-in
    caffe echoes its arguments; an unfinished stage 1 stops before caffe runs."""
    stage1 = tmp_path / "stage1.prototxt"
    stage1.write_text('max_iter: 20\nsnapshot_prefix: "snaps/stage1"\n')
    caffe = tmp_path / "caffe"
    caffe.write_text('#!/bin/sh\necho "caffe $*"\n')
    caffe.chmod(0o755)
    script = ('W=$("%s" "%s" stage1.prototxt) && ./caffe train -solver stage2.prototxt '
              '-weights "$W"' % (sys.executable, TOOL))
    proc = subprocess.run(["sh", "-c", script], capture_output=True, text=True, cwd=str(tmp_path),
                          timeout=60)
    assert proc.returncode == 1 and "caffe" not in proc.stdout
    assert "no snaps/stage1_iter_20.caffemodel" in proc.stderr
    touch(tmp_path / "snaps" / "stage1_iter_20.caffemodel")
    proc = subprocess.run(["sh", "-c", script], capture_output=True, text=True, cwd=str(tmp_path),
                          timeout=60)
    assert proc.stdout == "caffe train -solver stage2.prototxt -weights snaps/stage1_iter_20.caffemodel\n"
