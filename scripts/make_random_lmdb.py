#!/usr/bin/env python3
"""Write an LMDB of random images as Caffe Datums (raw uint8, channels x
height x width, labels uniform in [0, classes)) for data-layer benchmarks
(tools/bench_nets.py's LMDB input). Not training data: the pixels are noise.

  scripts/make_random_lmdb.py OUT_DIR [--count 1024] [--size 256] [--classes 1000]

Written under a temporary name and renamed when complete. Needs the Python
packages lmdb and protobuf and Caffe's caffe_pb2.py (found in pycaffe, or
given by --proto-dir), but not pycaffe's compiled module.
"""
import argparse
import os
import shutil
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_caffe_pb2(proto_dir=None):
    """caffe_pb2 without importing the caffe package (whose __init__ loads _caffe)."""
    import importlib.util
    candidates = [proto_dir] if proto_dir else []
    for entry in sys.path + [os.path.join(REPO, "build", "cpu", "caffe-src", "python")]:
        candidates.append(os.path.join(entry, "caffe", "proto"))
    for folder in candidates:
        path = os.path.join(folder or "", "caffe_pb2.py")
        if os.path.isfile(path):
            spec = importlib.util.spec_from_file_location("caffe_pb2", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    raise SystemExit("error: caffe_pb2.py not found (build pycaffe, or give --proto-dir)")


def write(out_dir, count, size, classes, seed, caffe_pb2):
    import lmdb
    import numpy as np
    rng = np.random.default_rng(seed)
    tmp = out_dir.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    env = lmdb.open(tmp, map_size=max(2**30, count * (3 * size * size + 64) * 2))
    with env.begin(write=True) as txn:
        for i in range(count):
            datum = caffe_pb2.Datum(channels=3, height=size, width=size,
                                    label=int(rng.integers(classes)),
                                    data=rng.integers(0, 256, (3, size, size),
                                                      dtype=np.uint8).tobytes())
            txn.put(b"%08d" % i, datum.SerializeToString())
    env.close()
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir", help="the LMDB folder to write")
    p.add_argument("--count", type=int, default=1024, help="images (default 1024)")
    p.add_argument("--size", type=int, default=256, help="height = width (default 256)")
    p.add_argument("--classes", type=int, default=1000, help="label range (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--proto-dir", help="folder holding caffe_pb2.py")
    args = p.parse_args(argv)
    if min(args.count, args.size, args.classes) < 1:
        raise SystemExit("error: --count, --size and --classes must be >= 1")
    write(args.out_dir, args.count, args.size, args.classes, args.seed,
          load_caffe_pb2(args.proto_dir))
    print("%s: %d random %dx%d images" % (args.out_dir, args.count, args.size, args.size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
