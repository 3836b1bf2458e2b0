"""epoch_runs_cli.ReportWriter: a training asks for a report rewrite and goes
on at once; asks during a rewrite fold into one more; flush() waits for the
last; a failing rewrite is logged and the next one still runs."""
import threading

from gencaffe.experiments.epoch_runs_cli import ReportWriter


def test_asks_return_at_once_and_fold_into_one_more_rewrite():
    started, release = threading.Event(), threading.Event()
    calls = []

    def write():
        calls.append(len(calls))
        started.set()
        assert release.wait(10)

    writer = ReportWriter(write, log=lambda m: None)
    writer()
    assert started.wait(10)            # the first rewrite runs, and blocks...
    for _ in range(5):
        writer()                       # ...while the trainings' asks return at once
    assert calls == [0]
    release.set()
    writer.flush()
    assert calls == [0, 1]             # five asks during a rewrite: one more rewrite


def test_a_failed_rewrite_is_logged_and_the_next_runs():
    logged, calls = [], []

    def write():
        calls.append(1)
        if len(calls) == 1:
            raise OSError("disk full")

    writer = ReportWriter(write, log=logged.append)
    writer()
    writer.flush()
    writer()
    writer.flush()
    assert len(calls) == 2
    assert logged == ["warning: the report was not rewritten: OSError: disk full"]


def test_flush_without_asks_returns():
    writer = ReportWriter(lambda: None, log=lambda m: None)
    writer.flush()
