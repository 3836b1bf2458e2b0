#!/usr/bin/env python3
"""Plot any output of `caffe train` logs over iterations, several runs side by
side: one panel per output, one line per run. For what Caffe's own
tools/extra/plot_training_log.py cannot show, e.g. GenerativeLoss's ESS top
(when a run leaves its starting plateau, how far its classes' batch weights
concentrate) or the semi-supervised diagnostics tops.

A run (--run NAME=PATH) is a log file, a folder with a train.log, or a
runner's run folder of epoch chunks (epoch1/, epoch2/, ...; the chunk still
training is read from its train.log.partial, so a live run can be watched).
An output (--output) is a train net output as the solver log shows it ("ess",
"loss"), or test:NAME for a test-net output ("test:accuracy").

Example (Table 3, seed 1: the plateau exit of semi GG against supervised GG):
  python3 tools/plot_log.py --output ess --output loss --max-iteration 480 \\
      --run "Table 2 GG=runs/tiny_imagenet/alexnet/gg/seed1" \\
      --run "50k semi GG=runs/tiny_imagenet_semi/50k/seed1/semi_gg" --out ess.png
"""
import argparse
import sys

from repo_paths import REPO  # noqa: E402,F401  (python/ on sys.path)
from gencaffe.cli_args import named_path, positive_int  # noqa: E402


def build_parser():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=named_path, action="append", required=True,
                   metavar="NAME=PATH",
                   help="a run's log file or folder and its name in the legend; repeat for "
                        "several")
    p.add_argument("--output", action="append", default=None, metavar="NAME",
                   help="a train output (e.g. ess, loss) or test:NAME (e.g. test:accuracy); "
                        "repeat for several panels (default: loss)")
    p.add_argument("--out", required=True, help="the PNG to write (atomically)")
    p.add_argument("--csv", default=None,
                   help="also write the plotted values to this CSV (run,output,iteration,"
                        "value; atomically)")
    p.add_argument("--max-iteration", type=positive_int, default=None,
                   help="plot iterations up to this one (default: all)")
    p.add_argument("--log-y", action="store_true", help="logarithmic y axes")
    p.add_argument("--title", default=None, help="a title over the first panel")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    from gencaffe.atomic_io import atomic_write
    from gencaffe.experiments import log_curves
    from gencaffe.experiments.plots import save_png
    outputs = args.output or ["loss"]
    try:
        runs = [(name, log_curves.run_series(path, outputs)) for name, path in args.run]
    except (OSError, ValueError) as err:
        print("error: %s" % err, file=sys.stderr)
        return 1
    save_png(log_curves.figure(runs, outputs, log_y=args.log_y,
                               max_iteration=args.max_iteration, title=args.title), args.out)
    print("wrote %s" % args.out)
    if args.csv:
        with atomic_write(args.csv, "w") as handle:
            handle.write(log_curves.csv_text(runs, outputs))
        print("wrote %s" % args.csv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
