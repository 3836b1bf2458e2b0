"""Run upstream's convert_imageset and compute_image_mean, reading their logs.

The tools do the work; this module adds what they lack: a progress bar fed by
their "Processed N files." lines, the names of the files convert_imageset
skipped ("Could not open or find file PATH", src/caffe/util/io.cpp), the count
of libjpeg's "Premature end of JPEG file" warnings (truncated JPEGs that
OpenCV decoded anyway, which convert_imageset does NOT skip and does not name),
and the full log in a file. Their glog output goes to stderr only
(GLOG_logtostderr=1), so no stray log files are left in /tmp.

Facts of the upstream code this relies on (tools/convert_imageset.cpp):
the list file is read line by line, the label is after the last space, a file
cv::imread cannot read is logged and skipped, and the tool still exits 0;
every 1000 written records are committed and logged; the DB must not exist
(db::NEW makes the directory and fails otherwise). compute_image_mean logs
every 10000 records and "mean_value channel [c]: v" at the end.
"""
from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
from typing import Callable, List, Optional

CONVERT_IMAGESET = "convert_imageset"
COMPUTE_IMAGE_MEAN = "compute_image_mean"

_PROCESSED = re.compile(r"Processed (\d+) files\.")
_UNREADABLE = re.compile(r"Could not open or find file (.*)$")
_TOTAL = re.compile(r"A total of (\d+) images\.")
_MEAN_VALUE = re.compile(r"mean_value channel \[(\d+)\]: ([-+0-9.eE]+)")
_PREMATURE = "Premature end of JPEG file"
TAIL_LINES = 25


class ToolError(RuntimeError):
    """A Caffe tool is missing or failed; the message says which and shows its last lines."""


def find_tool(name: str, tools_dir: Optional[str] = None, repo: Optional[str] = None) -> str:
    """Path of a Caffe tool: in tools_dir if given, else $CAFFE_BUILD_DIR/caffe/tools,
    else <repo>/build/cpu/caffe/tools, else on PATH."""
    candidates = []
    if tools_dir:
        candidates.append(os.path.join(tools_dir, name))
    else:
        build = os.environ.get("CAFFE_BUILD_DIR") or (
            os.path.join(repo, "build", "cpu") if repo else None)
        if build:
            candidates.append(os.path.join(build, "caffe", "tools", name))
        on_path = shutil.which(name)
        if on_path:
            candidates.append(on_path)
    for path in candidates:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise ToolError("Caffe's %s not found (looked in: %s); build Caffe first (`make`) or pass "
                    "--caffe-tools DIR" % (name, ", ".join(candidates) or "PATH"))


def _tool_env():
    env = dict(os.environ)
    env.update(GLOG_logtostderr="1", GLOG_minloglevel="0")
    env.pop("GLOG_log_dir", None)
    return env


def run_logged(cmd: List[str], log_path: str, on_line: Callable[[str], None]) -> (int, List[str]):
    """Run cmd, copying its merged stdout/stderr to log_path and handing each line
    to on_line; return (exit code, its last TAIL_LINES lines)."""
    tail: List[str] = []
    os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
    with open(log_path, "w") as log:
        log.write("$ %s\n" % " ".join(cmd))
        log.flush()
        try:
            process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       text=True, errors="replace", env=_tool_env())
        except OSError as err:
            raise ToolError("cannot run %s: %s" % (cmd[0], err))
        try:
            for line in process.stdout:
                log.write(line)
                line = line.rstrip("\n")
                tail.append(line)
                if len(tail) > TAIL_LINES:
                    del tail[0]
                on_line(line)
        except BaseException:
            process.kill()
            process.wait()
            raise
        return process.wait(), tail


@dataclasses.dataclass
class ConvertResult:
    total: int = 0                     # "A total of N images." (the list's length)
    processed: int = 0                 # the last "Processed N files."
    unreadable: List[str] = dataclasses.field(default_factory=list)  # paths as the tool printed them
    premature_jpeg: int = 0            # libjpeg "Premature end of JPEG file" warnings
    log_path: str = ""


def convert_imageset(tool: str, root: str, list_file: str, db_path: str, height: int, width: int,
                     encoded: bool = False, encode_type: str = "", log_path: str = "",
                     progress: Optional[Callable[[int], None]] = None) -> ConvertResult:
    """convert_imageset ROOT/ LIST DB with resizing; progress(n) gets the running count.

    Raises ToolError when the tool exits non-zero or dies.
    """
    cmd = [tool, "--backend=lmdb", "--resize_height=%d" % height, "--resize_width=%d" % width]
    if encoded:
        cmd.append("--encoded")
        if encode_type:
            cmd.append("--encode_type=%s" % encode_type)
    cmd += [os.path.join(root, ""), list_file, db_path]
    result = ConvertResult(log_path=log_path)

    def on_line(line):
        match = _PROCESSED.search(line)
        if match:
            result.processed = int(match.group(1))
            if progress:
                progress(result.processed)
            return
        match = _UNREADABLE.search(line)
        if match:
            result.unreadable.append(match.group(1))
            return
        match = _TOTAL.search(line)
        if match:
            result.total = int(match.group(1))
            return
        if _PREMATURE in line:
            result.premature_jpeg += 1

    code, tail = run_logged(cmd, log_path, on_line)
    if code != 0:
        raise ToolError("%s failed (%s); its last lines:\n%s"
                        % (os.path.basename(tool), _describe_exit(code), "\n".join(tail)))
    return result


def compute_image_mean(tool: str, db_path: str, out_path: str, log_path: str = "",
                       progress: Optional[Callable[[int], None]] = None) -> List[float]:
    """compute_image_mean DB OUT; return the per-channel means it logs (B, G, R order)."""
    means = {}
    processed = [0]

    def on_line(line):
        match = _PROCESSED.search(line)
        if match:
            processed[0] = int(match.group(1))
            if progress:
                progress(processed[0])
            return
        match = _MEAN_VALUE.search(line)
        if match:
            means[int(match.group(1))] = float(match.group(2))

    code, tail = run_logged([tool, "--backend=lmdb", db_path, out_path], log_path, on_line)
    if code != 0:
        raise ToolError("%s failed (%s); its last lines:\n%s"
                        % (os.path.basename(tool), _describe_exit(code), "\n".join(tail)))
    if not os.path.isfile(out_path) or os.path.getsize(out_path) == 0:
        raise ToolError("%s exited 0 but wrote no mean file %s" % (os.path.basename(tool), out_path))
    return [means[c] for c in sorted(means)]


def _describe_exit(code: int) -> str:
    if code < 0:
        import signal
        try:
            return "killed by %s" % signal.Signals(-code).name
        except ValueError:
            return "killed by signal %d" % -code
    return "exit code %d" % code
