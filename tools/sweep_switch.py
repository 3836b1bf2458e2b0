#!/usr/bin/env python3
"""When to switch from GG to DG: train GG+DG on MNIST with the switch after
each of --points epochs (one GG run per seed, snapshotted every epoch, serves
every point), DG alone and GG alone as references, resumably; then write
results/mnist_switch.md, mnist_switch.png (test error against switch epoch)
and mnist_switch_diagnostics.png (the GG runs' ESS diagnostics over training),
and judge switch criteria (--criterion) against the sweep, training any epoch
a criterion picks that is not a sweep point.

  python3 tools/sweep_switch.py --seeds 1-3                      # the issue's sweep (25 epochs)
  python3 tools/sweep_switch.py --seeds 1-3 --epochs 12 --points 1,2,4,6,8,10 --jobs 2
  python3 tools/sweep_switch.py --seeds 1-3 --epochs 12 --budget 8 --points 1,2,4,6 --jobs 2
  python3 tools/sweep_switch.py ... --report-only                # rewrite the report

--budget B < --epochs sweeps GG+DG at B epochs in all and reads DG alone and
GG alone at their test pass after epoch B (the LeNet solvers' "inv" learning
rate ignores max_iter, so those are the B-epoch runs): one set of reference
runs serves several budgets.

Runs live in runs/mnist_switch_e<E> (see python/gencaffe/experiments/sweep_switch.py
for the layout); re-run the same command to continue after an interruption.
"""
import argparse
import sys

from repo_paths import REPO  # noqa: E402,F401  (python/ on sys.path)
from gencaffe import pycaffe_path  # noqa: E402
from gencaffe.cli_args import int_list, positive_int  # noqa: E402

pycaffe_path.add_build_pycaffe(REPO)
from gencaffe.experiments import mnist_runs, runner_cli, sweep_switch_cli  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int_list, default=int_list("1-3"),
                   help="seeds, e.g. 1-3 or 1,4 (default 1-3); Caffe's random_seed")
    p.add_argument("--epochs", type=positive_int, default=mnist_runs.TOTAL_EPOCHS,
                   help="epochs in all, the same for every point (default 25, the paper's)")
    p.add_argument("--budget", type=positive_int, metavar="B",
                   help="epochs in all of each GG+DG point (default --epochs); below --epochs, "
                        "DG alone and GG alone are their --epochs runs read after epoch B")
    p.add_argument("--points", type=int_list, default=int_list("1,2,4,8,12,16,20"),
                   help="switch after these GG epochs (default 1,2,4,8,12,16,20)")
    p.add_argument("--criterion", action="append", default=None, metavar="RULE",
                   help="a switch criterion to judge: NAME=OUTPUT<THRESHOLD (switch after the "
                        "first epoch whose GG test OUTPUT is below THRESHOLD) or "
                        "NAME=OUTPUT~CHANGE/WINDOW (switch once OUTPUT changed by less than "
                        "CHANGE over WINDOW epochs); OUTPUT: accuracy, ess, ess_within, "
                        "ess_within_sd, cross_weight; repeatable (default: %s)"
                        % ", ".join(sweep_switch_cli.DEFAULT_CRITERIA))
    runner_cli.add_running_options(
        p, REPO, runs_dir_help="default runs/mnist_switch_e<E>",
        results_dir_help="where mnist_switch.md and its PNGs go (default %(default)s)")
    return p.parse_args(argv)


def main(argv=None):
    return sweep_switch_cli.run(parse_args(argv), argv, REPO)


if __name__ == "__main__":
    sys.exit(main())
