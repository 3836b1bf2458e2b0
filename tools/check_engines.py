#!/usr/bin/env python3
"""Check that a net computes the same function on every engine and device:
Caffe's own layers on the CPU, Caffe's own CUDA layers (engine CAFFE) and
cuDNN's (engine CUDNN) on a GPU, with the same weights and input.

For each deploy net given (default: LeNet, AlexNet and ZF from models/), the
class probabilities of a forward pass and the input gradient of one class
score (net.backward) are compared against the CPU's, element by element:
|x - x_cpu| <= rtol * max|x_cpu| (default rtol 1e-3 for float: cuDNN and
cuBLAS sum in other orders and may pick other algorithms, e.g. FFT or
Winograd convolutions, whose rounding differs). Weights are seeded Gaussians
(the nets' own fillers would do, but std 0.01 makes AlexNet's scores vanish).
Writes a markdown table (--out) and exits 1 if any comparison fails.

  tools/check_engines.py --gpu 0 [--nets lenet,alexnet,zf] [--batch 4] [--out FILE]
"""
import argparse
import os
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "python"))
from gencaffe import pycaffe_path  # noqa: E402

pycaffe_path.add_build_pycaffe(REPO)
os.environ.setdefault("GLOG_minloglevel", "2")

import numpy as np  # noqa: E402


def relative_error(x, reference):
    scale = max(float(np.abs(reference).max()), 1e-30)
    return float(np.abs(x - reference).max()) / scale


def write_variant(arch, engine, batch, folder):
    """The deploy net of `arch` with every engine-selectable layer set to
    `engine` (None: the prototxt's default) and the given batch size."""
    from google.protobuf import text_format
    from gencaffe.nets import catalog, variants
    net = variants.build(catalog.architecture(arch), "deploy",
                         variants.NetOptions(engine=engine))
    net.layer[0].input_param.shape[0].dim[0] = batch
    path = os.path.join(folder, "%s_%s.prototxt" % (arch, engine or "default"))
    with open(path, "w") as handle:
        handle.write(text_format.MessageToString(net))
    return path


def run_net(caffe, model, weights, data, score_blob, klass):
    """(prob, input gradient, {blob: (data, diff)} after the backward pass)."""
    net = caffe.Net(model, weights, caffe.TEST)
    net.blobs["data"].data[...] = data
    prob = net.forward()["prob"].copy()
    for blob in net.blobs.values():
        blob.diff[...] = 0
    net.blobs[score_blob].diff[:, klass] = 1
    net.backward(start=score_blob)
    blobs = {name: (blob.data.copy(), blob.diff.copy()) for name, blob in net.blobs.items()}
    return prob, net.blobs["data"].diff.copy(), blobs


def first_divergence(blobs, reference, rtol):
    """Where a GPU run first leaves the CPU's: the first blob (in net order)
    whose forward data, and the last (backward runs in reverse) whose
    diff, differ by more than rtol; e.g. 'data: conv1 ok ... diff: pool1'."""
    names = list(reference)
    data_bad = [n for n in names if relative_error(blobs[n][0], reference[n][0]) > rtol]
    diff_bad = [n for n in names if relative_error(blobs[n][1], reference[n][1]) > rtol]
    return "forward first off at %s; backward first off at %s" % (
        data_bad[0] if data_bad else "none", diff_bad[-1] if diff_bad else "none")


def check(arch, gpu, batch, rtol, folder, rng):
    import caffe
    from gencaffe.nets import catalog
    spec = catalog.architecture(arch)
    caffe.set_mode_cpu()
    cpu_model = write_variant(arch, "CAFFE", batch, folder)
    net = caffe.Net(cpu_model, caffe.TEST)
    for params in net.params.values():
        for blob in params:
            blob.data[...] = rng.normal(0, 1.0 / np.sqrt(blob.data[0].size), blob.data.shape)
    weights = os.path.join(folder, arch + ".caffemodel")
    net.save(weights)
    data = rng.normal(0, 1, net.blobs["data"].data.shape).astype(np.float32)
    klass = int(rng.integers(spec.num_classes))
    reference = run_net(caffe, cpu_model, weights, data, spec.score, klass)
    rows = []
    caffe.set_device(gpu)
    caffe.set_mode_gpu()
    for engine in ("CAFFE", "CUDNN"):
        model = write_variant(arch, engine, batch, folder)
        prob, grad, blobs = run_net(caffe, model, weights, data, spec.score, klass)
        errors = (relative_error(prob, reference[0]), relative_error(grad, reference[1]))
        ok = all(e <= rtol for e in errors)
        rows.append((arch, "GPU " + engine, errors, ok,
                     "" if ok else first_divergence(blobs, reference[2], rtol)))
    caffe.set_mode_cpu()
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gpu", type=int, required=True, metavar="ID", help="the GPU to check")
    p.add_argument("--nets", default="lenet,alexnet,zf",
                   help="architectures, comma-separated (default lenet,alexnet,zf)")
    p.add_argument("--batch", type=int, default=4, help="images per forward (default 4)")
    p.add_argument("--rtol", type=float, default=1e-3,
                   help="largest allowed |x - x_cpu| / max|x_cpu| (default 1e-3)")
    p.add_argument("--seed", type=int, default=1, help="weights, input and class (default 1)")
    p.add_argument("--out", help="markdown table to write (default: print only)")
    args = p.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for arch in args.nets.split(","):
            rows += check(arch, args.gpu, args.batch, args.rtol, folder, rng)
    lines = ["| net | engine | prob: max rel. error vs CPU | input gradient: max rel. error "
             "vs CPU | within %g |" % args.rtol, "|---|---|---:|---:|---|"]
    for arch, engine, (e_prob, e_grad), ok, where in rows:
        lines.append("| %s | %s | %.2e | %.2e | %s |" % (arch, engine, e_prob, e_grad,
                                                       "yes" if ok else "**NO**: " + where))
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        from gencaffe.atomic_io import atomic_write
        with atomic_write(args.out, "w") as handle:
            handle.write(text)
    return 0 if all(r[3] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
