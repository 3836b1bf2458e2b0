"""tools/sweep_switch.py's work: the GG->DG switch sweep on MNIST and the
switch criteria judged against it (runs: sweep_switch; report: switch_report)."""
import os

from ..cli_args import log, report_command
from . import caffe_runs, mnist_runs, runner_cli, switch_report, sweep_switch

# Candidates judged in the report (names are what the table shows), fixed
# after looking at the diagnostics of two GG runs and before any switch run
# had finished:
#   batch-ess         the Table 1 runner's auto switch: batch ESS fraction < 0.15
#                     (Sec. 4.2 taken literally; it falls to ~1/C within the first epoch)
#   within-ess        the weights "skewed" within the classes: within-class ESS < 0.5
#                     (in those runs it rose, 0.89 -> 0.97: it may never fire)
#   cross-plateau     the weight on other classes' examples has settled: changed by
#                     < 0.002 over 2 epochs
#   accuracy-plateau  GG's test accuracy gained < 0.1 % over 2 epochs
DEFAULT_CRITERIA = ("batch-ess=ess<0.15", "within-ess=ess_within<0.5",
                    "cross-plateau=cross_weight~0.002/2", "accuracy-plateau=accuracy~0.001/2")


def run(args, argv, repo) -> int:
    """The sweep: per seed a GG and a DG run, a GG+DG run for every switch
    point (stage 2 from the GG run's snapshot), then the criteria's own
    switch epochs; the report rewritten after each; the exit status."""
    args.points = sorted(args.points)
    budget = args.budget or args.epochs
    settings = mnist_runs.Settings(repo=repo,
                                   runs_dir=args.runs_dir or "runs/mnist_switch_e%d" % args.epochs,
                                   total_epochs=args.epochs, **runner_cli.running_settings(args))
    try:
        sweep_switch.check_budget(settings, budget)
        sweep_switch.check_points(args.points, budget)
        criteria = [sweep_switch.parse_criterion(c) for c in (args.criterion or DEFAULT_CRITERIA)]
        settings.check(("dg", "gg"))
    except ValueError as err:
        raise SystemExit("error: %s" % err) from None
    budget_note = ("The paper's schedule: 25 epochs." if budget == mnist_runs.TOTAL_EPOCHS else
                   "**A shorter budget than the paper's 25 epochs: %d epochs in all for every "
                   "point, for the CPU time here**; switch points scaled accordingly." % budget)
    if budget < args.epochs:
        budget_note += (" DG alone and GG alone: the test pass after epoch %d of %d-epoch runs "
                        "(the solvers' inv learning rate ignores max_iter, so these are the "
                        "%d-epoch runs; the diagnostics below show all %d epochs)."
                        % (budget, args.epochs, budget, args.epochs))
    results_dir = os.path.join(repo, args.results_dir)
    images = ("mnist_switch.png", "mnist_switch_diagnostics.png")

    def report():
        # every seed with sweep runs on disk, not only this command's (the
        # points stay the ones asked for: the rules' own runs lie beside them);
        # the report names the training command that covers them all
        seeds = caffe_runs.widened(args.seeds, caffe_runs.numbered_folders(
            os.path.join(repo, sweep_switch.sweep_dir(settings, budget)), "seed"))
        command = report_command("tools/sweep_switch.py", argv,
                                 {"--seeds": (seeds, args.seeds, None)})
        results = sweep_switch.collect(settings, seeds, args.points, budget)
        switch_report.plot(results, args.points, budget,
                           os.path.join(results_dir, images[0]),
                           os.path.join(results_dir, images[1]))
        switch_report.write_report(os.path.join(results_dir, "mnist_switch.md"), results,
                                   args.points, budget, criteria, command, budget_note, images)
        done = sum(v is not None for r in results for v in [r.dg, r.gg, *r.switch.values()])
        log("report: %d runs finished -> %s" % (done, os.path.join(results_dir,
                                                                     "mnist_switch.md")))
        return results

    if args.report_only:
        report()
        return 0
    runner = mnist_runs.Runner(settings)
    ensure = runner.ensure
    tasks = [("gg seed%d" % s, (lambda s=s: ensure(mnist_runs.gg_run(settings, s))))
             for s in args.seeds]
    tasks += [("dg seed%d" % s, (lambda s=s: ensure(mnist_runs.dg_run(settings, s))))
              for s in args.seeds]

    def switch_task(seed, epoch):
        ensure(mnist_runs.gg_run(settings, seed))          # waits for the seed's GG run
        ensure(sweep_switch.switch_run(settings, seed, epoch, budget))

    tasks += [("switch after %d seed%d" % (e, s), (lambda s=s, e=e: switch_task(s, e)))
              for s in args.seeds for e in args.points]
    log("plan: %d seeds x (GG, DG: %d epochs; %d switch points, %d epochs in all), %d job(s), "
        "runs in %s" % (len(args.seeds), args.epochs, len(args.points), budget, args.jobs,
                        settings.runs_dir))
    failures = caffe_runs.drive(runner, tasks, args.jobs, report, log)
    # the criteria's picks that are not sweep points
    results = report()
    extra = sorted({(r.seed, c.choose(r.gg_epochs, budget)) for r in results
                    for c in criteria if r.gg_epochs} - {(r.seed, None) for r in results}
                   - {(r.seed, e) for r in results for e in args.points})
    if extra:
        log("training the criteria's switch epochs beyond the sweep: %s"
            % ", ".join("seed%d epoch%d" % x for x in extra))
        failures += caffe_runs.drive(runner, [("switch after %d seed%d" % (e, s),
                                               (lambda s=s, e=e: switch_task(s, e)))
                                              for s, e in extra], args.jobs, report, log)
    return caffe_runs.exit_status(failures, log, "task(s)")
