"""The ledger of finished runs: one small JSON per run that has finished its
training and 5-crop evaluation, committed beside its report
(results/<report>_runs/<key>.json), so that

* a report keeps every finished run's numbers after the run's folder under
  runs/ is gone (a new machine, a cleaned disk): runs/ holds hundreds of MB
  per run and is never committed, its numbers are a few KB;
* a runner does not train again what the ledger holds for the same plan.

An entry is the run's report record (tiny_imagenet_report.RunResult: errors,
per-epoch test passes, train displays, times, semi GG diagnostics) with the
sha256 of its plan: every epoch's solver text, net and data fingerprint, the
shared stage 1 included (plan_sha256). A run counts as the ledger's only
where that plan is the one the runner would train now; a changed solver, net
or data makes the entry stale, and the run is trained again.

The run on disk, where it is complete, is the authority: the report writes
it into the ledger (a rerun that disagrees with the entry is logged, and
replaces it). Entries are written to a temporary file, then renamed.
"""
import datetime
import hashlib
import json
import os
from dataclasses import asdict, fields
from typing import Callable, Dict, Optional, Sequence

FORMAT = 1
SUFFIX = ".json"


class LedgerError(RuntimeError):
    """A ledger file cannot be read; the message names it."""


def plan_sha256(chunks: Sequence, folders: Optional[Dict[str, str]] = None) -> str:
    """What defines a run's numbers: each chunk's solver, files and data
    fingerprint, in order (a two-stage run's chunks include its stage 1's).
    `folders` {path: name} are named, not spelled out (longest first): where
    the runs and the data lie does not change the numbers (the data's
    fingerprint says what it holds)."""
    def neutral(text):
        for path, name in sorted((folders or {}).items(), key=lambda item: -len(item[0])):
            text = text.replace(path, name)
        return text
    plan = [{"solver": neutral(c.solver), "files": {k: neutral(v) for k, v in c.files.items()},
             "data": c.data_fingerprint} for c in chunks]
    return hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()


def entry_path(ledger_dir: str, key: str) -> str:
    return os.path.join(ledger_dir, key + SUFFIX)


def load(ledger_dir: Optional[str]) -> Dict[str, dict]:
    """{key: entry} of every entry in ledger_dir ({} when there is none)."""
    if not ledger_dir or not os.path.isdir(ledger_dir):
        return {}
    entries = {}
    for name in sorted(os.listdir(ledger_dir)):
        if not name.endswith(SUFFIX):
            continue
        path = os.path.join(ledger_dir, name)
        try:
            with open(path) as handle:
                entry = json.load(handle)
        except (OSError, ValueError) as err:
            raise LedgerError("%s: not a readable ledger entry (%s); restore it from git or "
                              "delete it to train the run again" % (path, err)) from None
        missing = [k for k in ("format", "key", "plan_sha256", "result") if k not in entry]
        if missing or entry["format"] != FORMAT or entry["key"] != name[:-len(SUFFIX)]:
            raise LedgerError("%s: not a format-%d ledger entry for key %r (%s)" % (
                path, FORMAT, name[:-len(SUFFIX)],
                "missing " + ", ".join(missing) if missing else
                "format %r, key %r" % (entry.get("format"), entry.get("key"))))
        entries[entry["key"]] = entry
    return entries


def result_of(entry: dict, result_type):
    """The entry's record as a result_type (RunResult); fields it does not
    know are refused, fields it lacks take their defaults."""
    known = {f.name for f in fields(result_type)}
    unknown = sorted(set(entry["result"]) - known)
    if unknown:
        raise LedgerError("ledger entry %s: unknown fields %s" % (entry["key"], unknown))
    result = result_type(**entry["result"])
    result.source = entry.get("source", "ledger")
    return result


def _record(result) -> dict:
    record = asdict(result)
    record.pop("source", None)
    return json.loads(json.dumps(record))   # tuples as lists: what a reload gives


def write(ledger_dir: str, key: str, plan: str, result, source: str,
          recorded: Optional[str] = None) -> dict:
    """Write one entry (temporary file, then rename); returns it."""
    from ..solver_config import write_text_atomic
    entry = {"format": FORMAT, "key": key, "plan_sha256": plan,
             "recorded": recorded or datetime.datetime.now(datetime.timezone.utc)
             .strftime("%Y-%m-%dT%H:%M:%SZ"),
             "source": source, "result": _record(result)}
    os.makedirs(ledger_dir, exist_ok=True)
    write_text_atomic(entry_path(ledger_dir, key), json.dumps(entry, indent=1, sort_keys=True)
                      + "\n")
    return entry


def reconcile(ledger_dir: Optional[str], entries: Dict[str, dict], key: str, plan: Optional[str],
              on_disk, source: str, log: Callable[[str], None], result_type):
    """The record to report for one run, and the ledger brought up to date:

    * complete on disk: that, written to the ledger when the entry is
      missing, stale or different (a semi GG run's diagnostics that are not
      computed yet are kept from an entry of the same plan);
    * else the ledger's entry when its plan is `plan` (or `plan` is None:
      not computable here, e.g. a split not on this disk);
    * else what is on disk (a run in progress, or nothing).
    """
    entry = entries.get(key)
    current = entry is not None and (plan is None or entry["plan_sha256"] == plan)
    if on_disk.complete:
        if ledger_dir is None or plan is None:
            return on_disk
        if current and getattr(on_disk, "diagnostics", None) is None:
            on_disk.diagnostics = entry["result"].get("diagnostics")
        record = _record(on_disk)
        if current and entry["result"] == record:
            return on_disk
        if current and entry["result"].get("top1_error") != record["top1_error"]:
            log("warning: %s: the run on disk (5-crop top-1 %.2f %%) differs from its ledger "
                "entry (%s %%, %s); the ledger now holds the run on disk"
                % (key, record["top1_error"], entry["result"].get("top1_error"),
                   entry.get("source")))
        elif entry is not None and not current:
            log("warning: %s: its ledger entry (%s) was made for another plan (solver, net, "
                "data or epochs); replaced by the finished run on disk (git keeps the old one)"
                % (key, entry.get("source")))
        entries[key] = write(ledger_dir, key, plan, on_disk, source)
        return on_disk
    if current:
        return result_of(entry, result_type)
    if entry is not None and on_disk.epochs_done == 0:
        log("note: %s: its ledger entry was made for another plan (solver, net or data "
            "changed); not reported, the run trains again" % key)
    return on_disk


def finished(entries: Dict[str, dict], key: str, plan: str) -> bool:
    """The ledger holds this run, finished, for this plan: nothing to train."""
    entry = entries.get(key)
    return entry is not None and entry["plan_sha256"] == plan and \
        entry["result"].get("top1_error") is not None


__all__ = ["LedgerError", "plan_sha256", "load", "write", "reconcile", "finished", "result_of",
           "FORMAT"]
