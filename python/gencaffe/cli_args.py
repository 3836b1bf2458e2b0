"""Argument types and helpers shared by the command lines (tools/, python/*.py)."""
import argparse
import math
import re
import sys
import threading
import time


def int_list(text):
    """argparse type: '1-5', '1,2,7' or '1-3,9' -> [1, 2, ...] (order kept,
    duplicates dropped)."""
    values = []
    try:
        for part in text.split(","):
            low, dash, high = part.strip().partition("-")
            if dash:
                values.extend(range(int(low), int(high) + 1))
            elif part.strip():
                values.append(int(part))
    except ValueError:
        raise argparse.ArgumentTypeError("expected numbers like '1-5' or '1,4,9', got %r"
                                         % text) from None
    if not values:
        raise argparse.ArgumentTypeError("no numbers in %r" % text)
    return list(dict.fromkeys(values))


def int_list_text(values):
    """int_list's inverse: [1, 2, 3, 9] -> '1-3,9'."""
    parts, values = [], sorted(set(values))
    start = None
    for index, value in enumerate(values):
        if start is None:
            start = value
        if index + 1 == len(values) or values[index + 1] != value + 1:
            parts.append(str(start) if start == value else "%d-%d" % (start, value))
            start = None
    return ",".join(parts)


def with_options(argv, options):
    """argv with each `--name value` (or `--name=value`) of `options` set to
    options[name]: replaced where given, appended where not; a value of None
    drops the option. For a report's command: the one that reproduces it."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in options:
            skip = "=" not in arg
            continue
        out.append(arg)
    for name, value in options.items():
        if value is not None:
            out += [name, str(value)]
    return out


def report_command(tool, argv, scope, fixed=None):
    """The command that trains everything a runner's report shows: `tool`
    with its arguments (`argv`, default sys.argv[1:]; less --report-only), each
    option of `scope` ({flag: (covered, asked, every)}) set to what the report
    covers where that differs from what was asked: numbers as int_list_text
    writes them, names comma-joined, and dropped (its default) when it covers
    `every` choice (None: never dropped). `fixed` ({flag: value or None})
    sets or drops flags whose scope a caller works out itself."""
    import sys
    given = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--report-only"]
    options = dict(fixed or {})
    for flag, (covered, asked, every) in scope.items():
        if set(covered) == set(asked):
            continue
        if every is not None and set(covered) == set(every):
            options[flag] = None
        elif all(isinstance(value, int) for value in covered):
            options[flag] = int_list_text(covered)
        else:
            options[flag] = ",".join(covered)
    return " ".join([tool] + with_options(given, options))


def choice_list(choices, what="value", canonical_order=False):
    """argparse type: a comma-separated subset of `choices`, in the order given
    (canonical_order: in the order of `choices`); unknown names refused with
    the list of choices."""
    def parse(text):
        values = list(dict.fromkeys(v.strip() for v in text.split(",") if v.strip()))
        unknown = [v for v in values if v not in choices]
        if unknown or not values:
            raise argparse.ArgumentTypeError("unknown %s %s; choose from %s" % (
                what, ",".join(unknown) or "(none given)", ",".join(choices)))
        return [c for c in choices if c in values] if canonical_order else values
    return parse


def _number(text, convert, what):
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected %s, got %r" % (what, text)) from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError("expected a finite number, got %s" % text)
    return value


def _at_least(value, text, minimum, strictly=False):
    if value < minimum or (strictly and value == minimum):
        raise argparse.ArgumentTypeError("must be %s %s, got %s"
                                         % (">" if strictly else ">=", minimum, text))
    return value


def positive_int(text):
    """argparse type: an integer >= 1."""
    return _at_least(_number(text, int, "a whole number"), text, 1)


def non_negative_int(text):
    """argparse type: an integer >= 0."""
    return _at_least(_number(text, int, "a whole number"), text, 0)


def positive_float(text):
    """argparse type: a finite number > 0."""
    return _at_least(_number(text, float, "a number"), text, 0, strictly=True)


def non_negative_float(text):
    """argparse type: a finite number >= 0."""
    return _at_least(_number(text, float, "a number"), text, 0)


def open_share(text):
    """argparse type: a share strictly between 0 and 1 (e.g. of a batch)."""
    value = _at_least(_number(text, float, "a number"), text, 0, strictly=True)
    if value >= 1:
        raise argparse.ArgumentTypeError("must be < 1, got %s" % text)
    return value


def named_path(text):
    """argparse type: NAME=PATH -> (name, path), both stripped and non-empty
    (a row or a line named NAME, read from PATH)."""
    name, equals, path = text.partition("=")
    if not equals or not name.strip() or not path.strip():
        raise argparse.ArgumentTypeError("expected NAME=PATH, got %r" % text)
    return name.strip(), path.strip()

def size_hw(text):
    """argparse type: an image size, N (square) or HxW, each >= 1 -> (H, W)."""
    match = re.fullmatch(r"(\d+)(?:[xX](\d+))?", text.strip())
    if not match or min(int(g) for g in match.groups() if g) < 1:
        raise argparse.ArgumentTypeError("expected N or HxW (e.g. 256 or 256x192), got %r"
                                         % text)
    return int(match.group(1)), int(match.group(2) or match.group(1))


_LOG_LOCK = threading.Lock()


def log(message):
    """The runners' progress line: HH:MM:SS message, flushed. One write under a
    lock: print() writes the text and its newline separately, so two runs'
    threads logging at the same second could join their lines."""
    line = "%s %s\n" % (time.strftime("%H:%M:%S"), message)
    with _LOG_LOCK:
        sys.stdout.write(line)
        sys.stdout.flush()
