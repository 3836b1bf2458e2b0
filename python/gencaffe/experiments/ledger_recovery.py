"""Ledger records recovered from a committed Tiny ImageNet report, for
finished runs whose folders are gone and that ran before the ledger
(run_ledger) existed: what the report printed, read back from its tables.

What a report prints of one seed is recoverable only where the seed stands
alone: top-5 and centre-crop errors are printed per run only as the mean of
one seed ("83.55 (1 seed)"), minutes per epoch as a mean over every run's
epochs. So a row is recovered only when it holds that one seed and no other
seed has trained an epoch; otherwise RecoveryError names the row. What a
report never printed stays empty: no train displays (no loss curves), test
passes at 0.1 point (the per-epoch table), no evaluation time; a semi GG
run's diagnostics keep the per-epoch table's statistics, its final net's two
readings, the batch's term weights and the prior ranks its reading printed.
"""
import re
from typing import Dict, List, Tuple

from . import tiny_imagenet as tiny
from . import tiny_imagenet_semi as semi
from .tiny_imagenet_report import ARCH_NAMES, RunResult


class RecoveryError(RuntimeError):
    """The report does not hold a run's numbers in a recoverable form."""


def sections(text: str) -> Dict[str, List[str]]:
    """{"## heading": its lines} of a markdown report."""
    found, current = {}, None
    for line in text.splitlines():
        if line.startswith("## "):
            current = line[3:].strip()
            found[current] = []
        elif current is not None:
            found[current].append(line)
    return found


def table_rows(lines: List[str], index: int = 0) -> List[List[str]]:
    """The body rows (cells stripped) of the index-th table among `lines`."""
    tables, rows, inside = [], [], False
    for line in lines + [""]:
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
            inside = True
        elif inside:
            tables.append(rows[2:])   # header and separator
            rows, inside = [], False
    if index >= len(tables):
        raise RecoveryError("table %d not found (%d in the section)" % (index, len(tables)))
    return tables[index]


def _section(found, heading: str) -> List[str]:
    for name, lines in found.items():
        if name.startswith(heading):
            return lines
    raise RecoveryError("no section '## %s...' in the report" % heading)


def one_seed_value(cell: str, what: str) -> float:
    match = re.fullmatch(r"(-?[0-9.]+) \(1 seed\)", cell)
    if not match:
        raise RecoveryError("%s: %r is not one seed's value" % (what, cell))
    return float(match.group(1))


def seed_cells(cell: str) -> Dict[int, str]:
    """{seed: "83.55" or "(5/9)"} of a per-seed cell."""
    return {int(seed): value for seed, value in re.findall(r"s(\d+) (\(\d+/\d+\)|[0-9.]+)", cell)}


def _invert(names: Dict[str, str], value: str, what: str) -> str:
    for key, name in names.items():
        if name == value:
            return key
    raise RecoveryError("unknown %s %r" % (what, value))


def _learning(found, group_names: Dict[str, str], titles: Dict[str, str]
              ) -> Dict[Tuple[str, str, int], List[float]]:
    """{(group, approach, seed): centre top-1 error % after each epoch}."""
    errors = {}
    for row in table_rows(_section(found, "Learning")):
        group = _invert(group_names, row[0], "row")
        values = [float(v) for v in row[3:] if v != "-"]
        errors[(group, _invert(titles, row[1], "approach"), int(row[2]))] = values
    return errors


def _main_rows(found, group_names, titles, seed: int):
    """[(group, approach, top1, top5, centre, minutes per epoch)] of the
    seed's finished runs in the report's first table."""
    rows = []
    for row in table_rows(_section(found, "Top-1")):
        group = _invert(group_names, row[0], "row")
        approach = _invert(titles, row[1], "approach")
        per_seed = seed_cells(row[5])
        what = "%s %s" % (row[0], row[1])
        if seed not in per_seed or per_seed[seed].startswith("("):
            continue   # that seed had not finished this run
        others = [s for s, v in per_seed.items() if s != seed and
                  not re.fullmatch(r"\(0/\d+\)", v)]
        if others:
            raise RecoveryError("%s: seeds %s also trained: the row's means are not seed %d's "
                                "alone (recover from a commit of the report before they ran)"
                                % (what, others, seed))
        rows.append((group, approach, float(per_seed[seed]), one_seed_value(row[3], what),
                     one_seed_value(row[4], what), float(row[8])))
    return rows


def _result(group, approach, seed, top1, top5, centre, epoch_errors, epochs_total,
            own_epochs: int, minutes: float, train_minutes: float) -> RunResult:
    if len(epoch_errors) != epochs_total:
        raise RecoveryError("%s %s seed %d: %d per-epoch errors, expected %d"
                            % (group, approach, seed, len(epoch_errors), epochs_total))
    # the last test pass to 0.01 point: the first table's centre-crop error
    errors = list(epoch_errors[:-1]) + [centre]
    return RunResult(group, approach, seed, epochs_done=epochs_total, epochs_total=epochs_total,
                     train_seconds=60.0 * train_minutes,
                     epoch_seconds=[60.0 * minutes] * own_epochs,
                     tests=[[float(e + 1), 1.0 - err / 100.0, None]
                            for e, err in enumerate(errors)],
                     centre_top1_error=centre, top1_error=top1, top5_error=top5)


def recover_table2(text: str, seed: int, epochs: int = 9, switch: int = 6
                   ) -> Dict[str, RunResult]:
    """{ledger key: record} of the seed's finished runs in a Table 2 report."""
    found = sections(text)
    errors = _learning(found, ARCH_NAMES, tiny.TITLES)
    rows = _main_rows(found, ARCH_NAMES, tiny.TITLES, seed)
    minutes = {(arch, approach): m for arch, approach, _, _, _, m in rows}
    results = {}
    for arch, approach, top1, top5, centre, mine in rows:
        two_stage = approach in tiny.STAGE1_OF
        own = epochs - switch if two_stage else epochs
        stage1 = switch * minutes.get((arch, tiny.STAGE1_OF.get(approach)), 0.0) \
            if two_stage else 0.0
        results[tiny.run_key(arch, approach, seed)] = _result(
            arch, approach, seed, top1, top5, centre, errors.get((arch, approach, seed), []),
            epochs, own, mine, stage1 + own * mine)
    return results


def _reading_numbers(found, fraction: str, seed: int) -> dict:
    """The batch's term weights and the prior ranks from a semi GG reading line."""
    pattern = (r"\* %s labels seed %d, semi GG's unlabelled term .*?lambda x (\d+) = "
               r"([0-9.]+) against (\d+) labelled images.*?(?:ranked by rho \(.*?\): "
               r"([0-9, ]+))?\.$" % (re.escape(fraction), seed))
    for line in _section(found, "What agrees"):
        match = re.match(pattern, line)
        if match:
            unlabelled = int(match.group(1))
            ranks = [int(r) for r in (match.group(4) or "").split(",") if r.strip()]
            return {"unlabelled_batch": unlabelled, "labelled_batch": int(match.group(3)),
                    "unlabeled_weight": round(float(match.group(2)) / unlabelled, 6),
                    "favoured_prior_ranks": ranks}
    raise RecoveryError("no reading of %s seed %d's unlabelled term" % (fraction, seed))


DIAGNOSTIC_COLUMNS = ("pseudo_accuracy", "classifier_accuracy", "agreement",
                      "largest_class_share", "class_entropy", "ess", "labelled_term",
                      "unlabelled_term")


def _diagnostics(found, fraction: str, seed: int, iters_per_epoch: int) -> dict:
    lines = _section(found, "The unlabelled term")
    snapshots = []
    for row in table_rows(lines, 0):
        if row[0] != fraction:
            continue
        if row[-1] != "1":
            raise RecoveryError("%s epoch %s: the diagnostics are a mean over %s seeds"
                                % (fraction, row[1], row[-1]))
        values = dict(zip(DIAGNOSTIC_COLUMNS, (float(v) for v in row[2:-1])))
        snapshots.append(dict(values, iteration=int(row[1]) * iters_per_epoch))
    if not snapshots:
        raise RecoveryError("no diagnostics rows for %s" % fraction)
    numbers = _reading_numbers(found, fraction, seed)
    snapshots[-1]["favoured_prior_ranks"] = numbers.pop("favoured_prior_ranks")
    diagnostics = dict(numbers, snapshots=snapshots)
    for row in table_rows(lines, 1):
        if row[0] == fraction:
            match = re.search(r"s%d ([0-9.]+) / ([0-9.]+)" % seed, row[3])
            if match:
                plain, bayes = float(match.group(1)), float(match.group(2))
                diagnostics["final"] = {"classifier_test_accuracy": 1 - plain / 100.0,
                                        "generative_test_accuracy": 1 - bayes / 100.0}
    return diagnostics


def recover_table3(text: str, seed: int, epochs: int = 9, switch: int = 6,
                   iters_per_epoch: int = 240) -> Dict[str, RunResult]:
    """{ledger key: record} of the seed's finished runs in a Table 3 report."""
    found = sections(text)
    fractions = {f: f for f in semi.FRACTIONS}
    labelled = {f: re.compile(r"%s \(\d+\)$" % f) for f in semi.FRACTIONS}
    results = {}
    errors = _learning(found, fractions, semi.TITLES)
    # the first table comes before any heading and names a share with its count: "50k (2342)"
    rows = []
    for row in table_rows(text.split("\n## ")[0].splitlines()):
        fraction = next((f for f, p in labelled.items() if p.match(row[0])), None)
        if fraction is None:
            raise RecoveryError("unknown labelled share %r" % row[0])
        rows.append([fraction] + row[1:])
    minutes = {}
    for row in rows:
        per_seed = seed_cells(row[5])
        if seed not in per_seed or per_seed[seed].startswith("("):
            continue
        others = [s for s, v in per_seed.items() if s != seed and
                  not re.fullmatch(r"\(0/\d+\)", v)]
        what = "%s %s" % (row[0], row[1])
        if others:
            raise RecoveryError("%s: seeds %s also trained: the row's means are not seed %d's "
                                "alone" % (what, others, seed))
        fraction, approach = row[0], _invert(semi.TITLES, row[1], "approach")
        minutes[(fraction, approach)] = float(row[8])
        total = switch if approach == "semi_gg" else epochs
        own = {"dg": epochs, "semi_gg": switch, "semi_gg_dg": epochs - switch}[approach]
        stage1 = switch * minutes.get((fraction, "semi_gg"), 0.0) \
            if approach == "semi_gg_dg" else 0.0
        result = _result(fraction, approach, seed, float(per_seed[seed]),
                         one_seed_value(row[3], what), one_seed_value(row[4], what),
                         errors.get((fraction, approach, seed), []), total, own,
                         float(row[8]), stage1 + own * float(row[8]))
        if approach == "semi_gg":
            result.diagnostics = _diagnostics(found, fraction, seed, iters_per_epoch)
        results[semi.run_key(fraction, seed, approach)] = result
    return results


__all__ = ["RecoveryError", "recover_table2", "recover_table3", "sections", "table_rows"]
