"""Ask Caffe for a net's blob shapes at candidate input sizes without risking this process.

Caffe checks shapes with glog CHECKs while it sets up or reshapes a net; a
failed CHECK (a kernel larger than its input, a crop outside its bottom, ...)
aborts the whole process, which Python cannot catch. So every probe runs in a
child process:

* :class:`ShapeProbe` starts one helper process (this file run as a script)
  per net. The helper loads only pycaffe's compiled ``_caffe`` extension (not
  the ``caffe`` package, whose ``caffe.io`` imports scikit-image: 0.4 s more),
  runs on the CPU with no GPU visible, and keeps a base net built at a size
  that Caffe accepted.
* Each probe runs in a child forked from the helper (a few ms): ``build``
  instantiates the net from a prototxt with Caffe's INFO log on, ``reshape``
  reshapes the base net's input blob and calls ``net.reshape()``. The child
  sends the node blob's shape back through a pipe and exits; if Caffe aborts
  it, the helper reads the child's log and returns Caffe's message and the
  layer it was setting up, and the next probe forks a fresh child.

Protocol (one JSON object per line). The client first sends
``{"caffe": path of _caffe*.so, "full_import": bool, "input": blob, "node":
blob}``, then
requests ``{"op": "build", "prototxt": text}``, ``{"op": "gradient", "prototxt":
text}`` (build, then one forward and backward pass), ``{"op": "support",
"prototxt": text, "seed": n}`` (which input rows and columns the node depends
on) or ``{"op": "reshape", "shape": [n, c, h, w]}``; the helper answers ``{"shape": [...], "params":
{layer: parameter blob count}}`` (``{"rows": [...], "cols": [...]}`` for support)
or ``{"rejected": message, "layer": name}``.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from typing import Dict, List, Optional, Sequence, Tuple

try:                                  # the helper runs this file as a script
    from .errors import NetSetupError, SizeRejected
except ImportError:                   # pragma: no cover - helper side
    NetSetupError = SizeRejected = None

HELPER = os.path.abspath(__file__)

# ---------------------------------------------------------------- client side


def find_caffe_extension() -> Tuple[str, bool]:
    """(path of pycaffe's compiled _caffe module, whether the helper must import
    the whole caffe package instead); from the caffe package this process imports."""
    import importlib.machinery
    import importlib.util
    spec = importlib.util.find_spec("caffe")
    if spec is None or not spec.submodule_search_locations:
        raise NetSetupError("cannot find pycaffe (the 'caffe' package); build Caffe or set "
                            "PYTHONPATH")
    for folder in spec.submodule_search_locations:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = os.path.join(folder, "_caffe" + suffix)
            if os.path.isfile(path):
                return path, False
    return "", True


class ShapeProbe:
    """One helper process answering shape questions about one net (see module doc).

    Use as a context manager. ``build(text)`` and ``reshape(shape)`` return the
    node blob's shape (a tuple) or raise SizeRejected with Caffe's reason.
    """

    def __init__(self, input_blob: str, node_blob: str, full_import: bool = False):
        caffe_so, must_import = find_caffe_extension()
        env = dict(os.environ)
        env["CUDA_VISIBLE_DEVICES"] = ""          # shapes need no GPU; keep the helper off it
        env["OPENBLAS_NUM_THREADS"] = "1"         # no BLAS threads: the helper forks
        env["GLOG_minloglevel"] = "2"
        env["GLOG_logtostderr"] = "1"
        # Python layers import their modules (and caffe) in the helper as they do here.
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
        self._stderr = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(
            [sys.executable, HELPER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._stderr, env=env, text=True, bufsize=1)
        self.calls = 0
        self._send({"caffe": caffe_so, "full_import": bool(full_import or must_import),
                    "input": input_blob, "node": node_blob})

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self._proc.poll() is None:
            try:
                self._proc.stdin.close()
                self._proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait()
        self._stderr.close()

    def _send(self, message: dict):
        try:
            self._proc.stdin.write(json.dumps(message) + "\n")
            self._proc.stdin.flush()
        except OSError:
            self._died()

    def _died(self):
        self._proc.wait()
        self._stderr.seek(0)
        tail = self._stderr.read().decode(errors="replace").strip().splitlines()[-8:]
        raise NetSetupError("the Caffe shape probe process ended unexpectedly (exit code "
                            f"{self._proc.returncode}): " + " | ".join(tail))

    def _answer(self, message: dict) -> dict:
        self.calls += 1
        self._send(message)
        line = self._proc.stdout.readline()
        if not line:
            self._died()
        answer = json.loads(line)
        if "rejected" in answer:
            raise SizeRejected(answer["rejected"], answer.get("layer"))
        return answer

    def _ask(self, message: dict) -> Tuple[Tuple[int, ...], Dict[str, int]]:
        answer = self._answer(message)
        if answer.get("empty"):
            # Caffe accepts blobs with no elements, but nothing flows through them:
            # part of the net would be cut off from the input (and Caffe's backward
            # fails on them). Such a size is no use.
            raise SizeRejected("Caffe gives blob(s) " + ", ".join(answer["empty"][:5])
                               + " no elements at this size")
        return tuple(answer["shape"]), answer.get("params", {})

    def build(self, prototxt: str) -> Tuple[Tuple[int, ...], Dict[str, int]]:
        """Instantiate the net from ``prototxt`` (a fresh net, as the caller will
        build it); returns (node shape, {layer: parameter blob count})."""
        return self._ask({"op": "build", "prototxt": prototxt})

    def gradient(self, prototxt: str) -> Tuple[int, ...]:
        """Build the net from ``prototxt`` and run one forward and backward pass
        (Caffe aborts on a layer it cannot back-propagate through); the node's shape."""
        return self._ask({"op": "gradient", "prototxt": prototxt})[0]

    def support(self, prototxt: str, seed: int = 1) -> Tuple[List[bool], List[bool]]:
        """Build the net from ``prototxt`` (a Parameter input named by its first layer,
        random weights from its fillers), run it on standard normal inputs and back
        from every element of the node (its loss_weight); (rows, columns) of the
        input on which some element of the gradient is non-zero."""
        answer = self._answer({"op": "support", "prototxt": prototxt, "seed": int(seed)})
        return answer["rows"], answer["cols"]

    def reshape(self, shape: Sequence[int]) -> Tuple[int, ...]:
        """Reshape the input of the last net built to ``shape``; the node's shape."""
        return self._ask({"op": "reshape", "shape": [int(d) for d in shape]})[0]


# ---------------------------------------------------------------- helper side

_FATAL = re.compile(r"^F\d+ \S+\s+\d+ (\S+:\d+)\] (.*)$", re.M)
_CREATING = re.compile(r"Creating [Ll]ayer (\S+)")
_FRAME = re.compile(r"caffe::(\w*Layer)<[^>]*>::(\w+)\(")


def explain_failure(log: str, status: int) -> Tuple[str, Optional[str]]:
    """(Caffe's reason, layer being set up or None) from a probe child's log and
    wait status."""
    layer = None
    done = log.find("Network initialization done")
    created = _CREATING.findall(log if done < 0 else log[:done])
    if created and done < 0:          # failed while Caffe was setting up this layer
        layer = created[-1]
    python_error = re.search(r"^PROBE-PYTHON-ERROR: (.*)$", log, re.M)
    fatal = _FATAL.search(log)
    if fatal:
        reason = f"{fatal.group(2).strip()} ({fatal.group(1)})"
        frame = _FRAME.search(log[fatal.end():])    # glog's stack trace, when it has one
        if frame and layer is None:
            reason += f" in {frame.group(1)}::{frame.group(2)}"
    elif python_error:
        reason = python_error.group(1)
    elif os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        reason = f"Caffe ended with signal {sig}" + (" (out of memory?)" if sig == 9 else "")
    else:
        reason = f"the probe exited with code {os.WEXITSTATUS(status)}"
    return reason, layer


def _load_caffe(path: str, full_import: bool):
    if full_import or not path:
        import caffe._caffe as module
        return module
    import importlib.util
    spec = importlib.util.spec_from_file_location("_caffe", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _blob_shape(net, name):
    for blob_name, blob in zip(net._blob_names, net._blobs):
        if blob_name == name:
            return [int(d) for d in blob.shape]
    raise KeyError(name)


def _empty_blobs(net):
    return [name for name, blob in zip(net._blob_names, net._blobs) if blob.count == 0]


def _param_counts(net) -> Dict[str, int]:
    return {name: len(layer.blobs) for name, layer in zip(net._layer_names, net.layers)
            if len(layer.blobs)}


def _build_net(caffe, prototxt: str, workdir: str):
    path = os.path.join(workdir, "probe.prototxt")
    with open(path, "w") as fh:
        fh.write(prototxt)
    return caffe.Net(path, 1)        # 1 = caffe.TEST


def _in_child(work, log_file) -> dict:
    """Fork; run ``work()`` (returns a dict) in the child with its stderr going to
    ``log_file``; the child's answer, or a rejection explaining how it died."""
    read_fd, write_fd = os.pipe()
    log_file.seek(0)
    log_file.truncate()
    pid = os.fork()
    if pid == 0:                                            # the probe child
        try:
            os.close(read_fd)
            os.dup2(log_file.fileno(), 2)
            try:
                answer = work()
            except Exception as err:                        # e.g. a Python layer's error
                os.write(2, f"\nPROBE-PYTHON-ERROR: {type(err).__name__}: {err}\n".encode())
                os._exit(3)
            data = json.dumps(answer).encode()
            while data:
                data = data[os.write(write_fd, data):]
            os._exit(0)
        finally:
            os._exit(4)
    os.close(write_fd)
    chunks = []
    while True:
        chunk = os.read(read_fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read_fd)
    _, status = os.waitpid(pid, 0)
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 and chunks:
        return json.loads(b"".join(chunks))
    log_file.seek(0)
    reason, layer = explain_failure(log_file.read().decode(errors="replace"), status)
    return {"rejected": reason, "layer": layer}


def helper_main() -> int:
    hello = json.loads(sys.stdin.readline() or "null")
    if not hello:
        return 0
    caffe = _load_caffe(hello["caffe"], hello["full_import"])
    caffe.set_mode_cpu()
    node = hello["node"]
    base = None                        # net built in this process at an accepted size ...
    base_text = accepted_text = None   # ... from this prototxt; the last one Caffe accepted
    workdir = tempfile.mkdtemp(prefix="hmc_probe_")
    log_file = tempfile.TemporaryFile(dir=workdir)
    try:
        for line in sys.stdin:
            request = json.loads(line)
            if request["op"] == "build":
                text = request["prototxt"]

                def work():
                    caffe.init_log(0, True)          # INFO log: names the failing layer
                    net = _build_net(caffe, text, workdir)
                    return {"shape": _blob_shape(net, node), "params": _param_counts(net),
                            "empty": _empty_blobs(net)}
                answer = _in_child(work, log_file)
                if "shape" in answer:
                    accepted_text = text
            elif request["op"] == "gradient":
                text = request["prototxt"]

                def work():
                    caffe.init_log(0, True)
                    net = _build_net(caffe, text, workdir)
                    last = len(net.layers) - 1
                    net._forward(0, last)
                    net._backward(last, 0)
                    return {"shape": _blob_shape(net, node)}
                answer = _in_child(work, log_file)
            elif request["op"] == "support":
                text, seed = request["prototxt"], request["seed"]

                def work():
                    import numpy as np
                    caffe.init_log(0, True)
                    caffe.set_random_seed(seed)
                    net = _build_net(caffe, text, workdir)
                    x = net.layers[0].blobs[0]
                    x.data[...] = np.random.default_rng(seed).standard_normal(x.data.shape)
                    last = len(net.layers) - 1
                    net._forward(0, last)
                    net._backward(last, 0)
                    used = np.abs(x.diff).sum(axis=(0, 1)) > 0      # (H, W)
                    return {"rows": used.any(axis=1).tolist(), "cols": used.any(axis=0).tolist()}
                answer = _in_child(work, log_file)
            elif accepted_text is None:
                answer = {"rejected": "no net has been built yet", "layer": None}
            else:
                shape = request["shape"]
                if base_text != accepted_text:
                    # Caffe built it in a child, so it builds here too (no abort): the
                    # reshapes start from this net, each in its own child.
                    base, base_text = None, None
                    base = _build_net(caffe, accepted_text, workdir)
                    base_text = accepted_text

                def work():
                    base._blobs[list(base._blob_names).index(hello["input"])].reshape(*shape)
                    base.reshape()
                    return {"shape": _blob_shape(base, node), "empty": _empty_blobs(base)}
                answer = _in_child(work, log_file)
            sys.stdout.write(json.dumps(answer) + "\n")
            sys.stdout.flush()
    finally:
        log_file.close()
        for name in os.listdir(workdir):
            os.unlink(os.path.join(workdir, name))
        os.rmdir(workdir)
    return 0


if __name__ == "__main__":
    sys.exit(helper_main())
