"""Parse the solver log that `caffe train` writes (glog lines on stderr).

What it extracts, per line pattern of upstream solver.cpp:

* test passes: "Iteration N, Testing net (#k)" followed by
  "Test net output #i: name = value [(* w = v loss)]" lines;
* train displays: "Iteration N (... iter/s, ...), loss = L" followed by
  "Train net output #i: name = value ..." lines, and the final
  "Iteration N, loss = L" that Caffe prints after the last step;
* snapshots ("Snapshotting to binary proto file PATH") and whether the run
  reached "Optimization Done.".

Only the text is read; nothing here needs pycaffe.
"""
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional

_NUMBER = r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|nan|-?inf)"
_TEST_START = re.compile(r"Iteration (\d+), Testing net \(#(\d+)\)")
_TEST_OUTPUT = re.compile(r"Test net output #(\d+): (\S+) = (" + _NUMBER + ")")
_TRAIN_DISPLAY = re.compile(r"Iteration (\d+) \([^)]*\), loss = (" + _NUMBER + ")")
_TRAIN_FINAL = re.compile(r"Iteration (\d+), loss = (" + _NUMBER + ")")
_TRAIN_OUTPUT = re.compile(r"Train net output #(\d+): (\S+) = (" + _NUMBER + ")")
_LEARNING_RATE = re.compile(r"Iteration (\d+), lr = (" + _NUMBER + ")")
_SNAPSHOT = re.compile(r"Snapshotting to (?:binary proto|HDF5) file (\S+)")
_DONE = "Optimization Done."


@dataclass
class TestPass:
    iteration: int
    net_id: int = 0
    outputs: Dict[str, float] = field(default_factory=dict)

    @property
    def error_percent(self) -> Optional[float]:
        """100 * (1 - accuracy), or None if the net has no "accuracy" output."""
        accuracy = self.outputs.get("accuracy")
        return None if accuracy is None else 100.0 * (1.0 - accuracy)


@dataclass
class TrainDisplay:
    iteration: int
    smoothed_loss: float
    outputs: Dict[str, float] = field(default_factory=dict)


@dataclass
class CaffeLog:
    test_passes: List[TestPass] = field(default_factory=list)
    train_displays: List[TrainDisplay] = field(default_factory=list)
    learning_rates: List[tuple] = field(default_factory=list)  # (iteration, lr)
    snapshots: List[str] = field(default_factory=list)
    finished: bool = False

    def tests(self, net_id=0):
        return [t for t in self.test_passes if t.net_id == net_id]

    def final_test(self, net_id=0) -> Optional[TestPass]:
        tests = self.tests(net_id)
        return tests[-1] if tests else None

    @property
    def last_iteration(self) -> int:
        iterations = [t.iteration for t in self.test_passes]
        iterations += [d.iteration for d in self.train_displays]
        return max(iterations) if iterations else 0


def _to_float(text):
    return float(text)  # float() already understands "nan", "inf", "-inf"


def parse_lines(lines) -> CaffeLog:
    log = CaffeLog()
    current = None  # the TestPass or TrainDisplay that output lines belong to
    for line in lines:
        match = _TEST_START.search(line)
        if match:
            current = TestPass(int(match.group(1)), int(match.group(2)))
            log.test_passes.append(current)
            continue
        match = _TEST_OUTPUT.search(line)
        if match:
            if isinstance(current, TestPass):
                current.outputs[match.group(2)] = _to_float(match.group(3))
            continue
        match = _TRAIN_DISPLAY.search(line) or _TRAIN_FINAL.search(line)
        if match:
            current = TrainDisplay(int(match.group(1)), _to_float(match.group(2)))
            log.train_displays.append(current)
            continue
        match = _TRAIN_OUTPUT.search(line)
        if match:
            if isinstance(current, TrainDisplay):
                current.outputs[match.group(2)] = _to_float(match.group(3))
            continue
        match = _LEARNING_RATE.search(line)
        if match:
            log.learning_rates.append((int(match.group(1)), _to_float(match.group(2))))
            continue
        match = _SNAPSHOT.search(line)
        if match:
            log.snapshots.append(match.group(1))
            continue
        if _DONE in line:
            log.finished = True
    # A test pass cut off by the end of the log (killed mid-test) has no outputs.
    log.test_passes = [t for t in log.test_passes if t.outputs]
    return log


def parse_text(text) -> CaffeLog:
    return parse_lines(text.splitlines())


def parse_file(path) -> CaffeLog:
    with open(path, errors="replace") as handle:
        return parse_lines(handle)
