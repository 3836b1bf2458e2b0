"""The runners' progress lines stay whole when several runs log at once."""
import re
import sys
import threading
import time

from gencaffe import cli_args


class SlowStream:
    """A stdout whose every write yields to other threads, so that a line
    written in two pieces (text, then newline) gets split by another thread's."""

    def __init__(self):
        self.pieces = []

    def write(self, text):
        time.sleep(0.0005)
        self.pieces.append(text)
        return len(text)

    def flush(self):
        pass


def test_lines_from_concurrent_runs_are_not_joined(monkeypatch):
    stream = SlowStream()
    monkeypatch.setattr(sys, "stdout", stream)

    def run(name):
        for i in range(30):
            cli_args.log("[%s] iter %d" % (name, i))

    threads = [threading.Thread(target=run, args=("run%d" % k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = "".join(stream.pieces).splitlines()
    assert len(lines) == 4 * 30
    assert all(re.fullmatch(r"\d\d:\d\d:\d\d \[run\d\] iter \d+", line) for line in lines), lines
