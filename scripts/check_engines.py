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

The input gradient of a ReLU/max-pooling net jumps wherever a ReLU input or
two pooling candidates lie within rounding of each other: on the CPU alone,
scaling the input by 1 + 1e-6 N(0,1) moves ZF's gradient by 5 % of its
largest value for one draw of weights and noise and AlexNet's by 6 % for
another (the probabilities by 1e-6): which net is hit depends on the draw. So each engine also runs
"pinned": every layer is fed the CPU's inputs to it, not its predecessor's
output, which gives every layer the CPU's ReLU gates and pooling choices.
An engine passes when the probabilities, each layer's own forward output
and the pinned input gradient are within rtol; a free-running gradient off
by more is reported, with the number of ReLU gates that flipped (max-pooling
choices that flipped are not counted: Caffe keeps them inside the layer). A
calibration row per net (--perturb) shows the CPU's own jump for an input
change of about the GPU's rounding.
Writes a markdown table (--out) and exits 1 if any comparison fails.

  scripts/check_engines.py --gpu 0 [--nets lenet,alexnet,zf] [--batch 4] [--perturb 1e-6]
                         [--out FILE]
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


def record_layers(net):
    """Run the forward pass one layer at a time and return, per layer, the
    data of its bottom blobs as that layer received them and of its tops as
    it left them (an in-place ReLU overwrites its bottom afterwards, so the
    blobs at the end of the pass do not show what each layer saw)."""
    def snapshot(ids):
        return {net._blob_names[i]: net.blobs[net._blob_names[i]].data.copy() for i in ids}
    record = []
    for index in range(len(net.layers)):
        inputs = snapshot(net._bottom_ids(index))
        net._forward(index, index)
        record.append((inputs, snapshot(net._top_ids(index))))
    return record


def pinned_forward(net, record):
    """Forward pass in which every layer is fed the reference run's inputs
    (`record_layers` of the reference) instead of its predecessor's output.
    Each output then differs from the reference's by that layer's own rounding
    only, and every ReLU gate and max-pooling choice is the reference's, so a
    difference left in the backward pass is the backward kernels' own.
    Returns {layer name: max rel. error of its tops against the reference's}."""
    errors = {}
    for index, (inputs, outputs) in enumerate(record):
        # A source layer (Input) has no inputs: its output is the input.
        for name, value in (inputs if inputs else outputs).items():
            net.blobs[name].data[...] = value
        net._forward(index, index)
        errors[net._layer_names[index]] = max(
            [relative_error(net.blobs[name].data, value) for name, value in outputs.items()],
            default=0.0)
    return errors


def backward_of_class(net, score_blob, klass):
    """The input gradient of one class score, summed over the batch, and every
    blob's (data, diff) after the backward pass."""
    for blob in net.blobs.values():
        blob.diff[...] = 0
    net.blobs[score_blob].diff[:, klass] = 1
    net.backward(start=score_blob)
    blobs = {name: (blob.data.copy(), blob.diff.copy()) for name, blob in net.blobs.items()}
    return net.blobs["data"].diff.copy(), blobs


def run_net(caffe, model, weights, data, score_blob, klass, pinned=None):
    """One forward and backward pass: a dict with the class probabilities
    'prob', the input gradient 'grad', every blob's (data, diff) 'blobs', and
    'record' (record_layers) or, with `pinned` (another run's record: see
    pinned_forward), 'layer_errors' against it."""
    net = caffe.Net(model, weights, caffe.TEST)
    net.blobs["data"].data[...] = data
    run = {}
    if pinned is None:
        run["record"] = record_layers(net)
    else:
        run["layer_errors"] = pinned_forward(net, pinned)
    run["prob"] = net.blobs["prob"].data.copy()
    run["grad"], run["blobs"] = backward_of_class(net, score_blob, klass)
    run["relu_tops"] = [net._blob_names[net._top_ids(i)[0]]
                        for i, layer in enumerate(net.layers) if layer.type == "ReLU"]
    return run


def relu_gates_flipped(relu_tops, blobs, reference):
    """How many ReLU outputs are positive in one run and not in the other
    (blobs as run_net's): the gates that rounding moved across zero."""
    return sum(int(np.count_nonzero((blobs[name][0] > 0) != (reference[name][0] > 0)))
               for name in relu_tops)


def first_divergence(blobs, reference, rtol):
    """Where a GPU run first leaves the CPU's: the first blob (in net order)
    whose forward data, and the last (backward runs in reverse) whose
    diff, differ by more than rtol; e.g. 'data: conv1 ok ... diff: pool1'."""
    names = list(reference)
    data_bad = [n for n in names if relative_error(blobs[n][0], reference[n][0]) > rtol]
    diff_bad = [n for n in names if relative_error(blobs[n][1], reference[n][1]) > rtol]
    return "forward first off at %s; backward first off at %s" % (
        data_bad[0] if data_bad else "none", diff_bad[-1] if diff_bad else "none")


def compare(run, reference, rtol):
    """One engine's run against the CPU's: a row dict for the report."""
    pinned = run["pinned"]
    worst_layer = max(pinned["layer_errors"], key=pinned["layer_errors"].get)
    row = {"prob": relative_error(run["prob"], reference["prob"]),
           "grad": relative_error(run["grad"], reference["grad"]),
           "pinned_grad": relative_error(pinned["grad"], reference["grad"]),
           "worst_layer": (worst_layer, pinned["layer_errors"][worst_layer]),
           "flips": relu_gates_flipped(run["relu_tops"], run["blobs"], reference["blobs"])}
    # The kernels are right when each layer, fed the CPU's inputs, computes the
    # CPU's outputs and gradients to rounding. The free-running gradient may
    # still differ: where a ReLU input or two max-pooling candidates lie within
    # rounding of each other, the gradient jumps, and which side each device
    # lands on is down to its summation order.
    row["ok"] = max(row["prob"], row["pinned_grad"], row["worst_layer"][1]) <= rtol
    if not row["ok"]:
        row["where"] = first_divergence(run["blobs"], reference["blobs"], rtol)
    elif row["grad"] > rtol:
        row["where"] = ("free-running gradient off by %d flipped ReLU gates (max-pooling "
                        "choices may flip too); fed the CPU's inputs, every layer agrees"
                        % row["flips"])
    else:
        row["where"] = ""
    return row


def check(arch, gpu, batch, rtol, folder, rng, perturb=0.0):
    """Rows comparing `arch` on the GPU (each engine) with the CPU. gpu=None
    runs the 'engine' side on the CPU too (a self-check of this tool).
    perturb > 0 adds a calibration row: the CPU with its input scaled by
    1 + perturb * N(0, 1), element-wise."""
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
    if gpu is not None:
        caffe.set_device(gpu)
        caffe.set_mode_gpu()
    for engine in ("CAFFE", "CUDNN") if gpu is not None else ("CAFFE",):
        model = write_variant(arch, engine, batch, folder)
        run = run_net(caffe, model, weights, data, spec.score, klass)
        run["pinned"] = run_net(caffe, model, weights, data, spec.score, klass,
                                pinned=reference["record"])
        row = compare(run, reference, rtol)
        row.update(net=arch, engine=("GPU " if gpu is not None else "CPU ") + engine)
        rows.append(row)
    caffe.set_mode_cpu()
    if perturb:
        # The CPU against itself with the input moved by about the GPU's
        # forward rounding: how far the gradient jumps with no kernel at fault.
        # Its own generator: `rng` must give the next net the weights it had before.
        noise = np.random.default_rng(2).standard_normal(data.shape)
        noisy = data * (1 + perturb * noise).astype(np.float32)
        run = run_net(caffe, cpu_model, weights, noisy, spec.score, klass)
        run["pinned"] = run_net(caffe, cpu_model, weights, noisy, spec.score, klass,
                                pinned=reference["record"])
        row = compare(run, reference, rtol)
        row.update(net=arch, engine="CPU, input x (1 + %g N(0,1))" % perturb, ok=None,
                   where="calibration: the gradient's own jumps")
        rows.append(row)
    return rows


def report(rows, rtol):
    lines = ["| net | engine | prob | input gradient | ReLU gates flipped | input gradient, "
             "every layer fed the CPU's inputs | largest single-layer forward error | "
             "within %g |" % rtol, "|---|---|---:|---:|---:|---:|---|---|"]
    for row in rows:
        verdict = {True: "yes", False: "**NO**", None: "-"}[row["ok"]] + (
            ": " + row["where"] if row["where"] else "")
        lines.append("| %s | %s | %.2e | %.2e | %d | %.2e | %s %.2e | %s |" % (
            row["net"], row["engine"], row["prob"], row["grad"], row["flips"],
            row["pinned_grad"], row["worst_layer"][0], row["worst_layer"][1], verdict))
    return "\n".join(lines) + "\n"


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
    p.add_argument("--perturb", type=float, default=1e-6, metavar="EPS",
                   help="add a calibration row per net: the CPU with its input scaled by "
                        "1 + EPS * N(0,1), i.e. how far the gradient jumps under a change of "
                        "about the GPU's rounding (default 1e-6; 0: no such row)")
    p.add_argument("--out", help="markdown table to write (default: print only)")
    args = p.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for arch in args.nets.split(","):
            rows += check(arch, args.gpu, args.batch, args.rtol, folder, rng, args.perturb)
    text = report(rows, args.rtol)
    print(text)
    if args.out:
        from gencaffe.atomic_io import atomic_write
        with atomic_write(args.out, "w") as handle:
            handle.write(text)
    return 0 if all(row["ok"] is not False for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
