#!/usr/bin/env python3
"""Ledger entries for finished Tiny ImageNet runs whose folders are gone and
that ran before the ledger existed, read back from a committed report.

The runners (tools/reproduce_tiny_imagenet.py, tools/reproduce_tiny_imagenet_semi.py)
record every finished run in a ledger beside their report
(results/<report>_runs/<key>.json) and report from it when the run's folder
under runs/ is gone. Runs that finished before that have only their
report's printed numbers; this tool turns those into ledger entries:

  python3 tools/recover_ledger.py table2 --report-commit efd5dff --seed 1
  python3 tools/recover_ledger.py table3 --report-commit 5bb4743 --seed 1

Pick a commit of the report where the seed's runs stand alone (no other
seed had trained): a report prints top-5, centre-crop error and minutes per
epoch only as means over seeds. What a report never printed stays empty (loss
curves, evaluation time); per-epoch errors are the report's 0.1-point
values. Each entry says so in its "source". The plan each entry is checked
against is the runner's with its default options (--runner-args for others),
so the runner treats the recovered runs as finished only while its solvers,
nets and data are those the report's runs used. Existing entries are kept
unless --force.
"""
import argparse
import os
import shlex
import subprocess
import sys

from repo_paths import REPO  # noqa: E402  (python/ on sys.path)
from gencaffe.cli_args import log, positive_int  # noqa: E402

REPORTS = {"table2": "tiny_imagenet", "table3": "tiny_imagenet_semi"}


def build_parser():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("table", choices=sorted(REPORTS),
                   help="table2: results/tiny_imagenet.md's runs; table3: "
                        "results/tiny_imagenet_semi.md's")
    p.add_argument("--report-commit", required=True,
                   help="the git commit whose report holds the seed's finished runs alone")
    p.add_argument("--seed", type=positive_int, default=1, help="the seed to recover (default 1)")
    p.add_argument("--why", default="their folders were lost with the machine they ran on",
                   help="why the runs' folders are gone, kept in each entry's source")
    p.add_argument("--results-dir", default="results",
                   help="where the report and its ledger (<report>_runs/) are (default "
                        "%(default)s)")
    p.add_argument("--runner-args", default="",
                   help="options of the runner the plan is computed with, as one string "
                        "(e.g. \"--lmdb-dir /data/tiny\"; default: its defaults)")
    p.add_argument("--force", action="store_true",
                   help="replace entries the ledger already holds (default: keep them)")
    return p


def report_text(commit: str, path: str) -> str:
    try:
        return subprocess.run(["git", "show", "%s:%s" % (commit, path)], cwd=REPO, check=True,
                              capture_output=True, text=True).stdout
    except subprocess.CalledProcessError as err:
        raise SystemExit("error: git show %s:%s failed: %s" % (commit, path,
                                                                err.stderr.strip()))


def plans(table: str, runner_args, keys):
    """{key: plan_sha256} as the runner would train each run now."""
    from gencaffe.experiments import run_ledger
    from gencaffe.experiments import tiny_imagenet as tiny
    import importlib
    runner = importlib.import_module("reproduce_" + REPORTS[table])   # a tool beside this one
    settings = runner.make_settings(runner.build_parser().parse_args(runner_args))
    settings.log = log
    data = tiny.prepare(settings)
    found = {}
    for key, result in keys.items():
        if table == "table2":
            sched = tiny.schedule(settings, result.arch, data,
                                  tiny.batches(result.arch, data, settings)[0])
            chunks = tiny.full_chain(settings, data, result.arch, result.approach, result.seed,
                                     sched)
        else:
            from gencaffe.experiments import tiny_imagenet_semi as semi
            sched = semi.schedule(settings, data, tiny.batches(semi.ARCH, data, settings)[0])
            manifest = semi.make_split(settings, data, result.arch, result.seed)
            chunks = semi.full_chain(settings, data, result.arch, result.seed, result.approach,
                                     sched, manifest)
        found[key] = run_ledger.plan_sha256(chunks, tiny.plan_folders(settings))
    return found


def main(argv=None):
    args = build_parser().parse_args(argv)
    from gencaffe import pycaffe_path
    pycaffe_path.add_build_pycaffe(REPO)
    pycaffe_path.require_caffe_pb2()
    from gencaffe.experiments import ledger_recovery, run_ledger
    name = REPORTS[args.table]
    report = os.path.join(args.results_dir, name + ".md")
    text = report_text(args.report_commit, report)
    recover = (ledger_recovery.recover_table2 if args.table == "table2"
               else ledger_recovery.recover_table3)
    try:
        results = recover(text, args.seed)
    except ledger_recovery.RecoveryError as err:
        log("error: %s at %s: %s" % (report, args.report_commit, err))
        return 2
    if not results:
        log("error: %s at %s holds no finished run of seed %d" % (report, args.report_commit,
                                                                  args.seed))
        return 2
    ledger_dir = os.path.join(REPO, args.results_dir, name + "_runs")
    entries = run_ledger.load(ledger_dir)
    try:
        planned = plans(args.table, shlex.split(args.runner_args), results)
    except RuntimeError as err:
        log("error: %s" % err)
        return 2
    commit = subprocess.run(["git", "rev-parse", "--short", args.report_commit], cwd=REPO,
                            capture_output=True, text=True).stdout.strip()
    source = ("recovered from %s at commit %s (%s)" % (report, commit, args.why))
    for key, result in sorted(results.items()):
        if key in entries and not args.force:
            log("%s: in the ledger already, kept (--force replaces it)" % key)
            continue
        run_ledger.write(ledger_dir, key, planned[key], result, source)
        log("%s: 5-crop top-1 %.2f %%, written to %s" % (
            key, result.top1_error, os.path.relpath(run_ledger.entry_path(ledger_dir, key),
                                                    REPO)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
