#!/usr/bin/env python3
"""Check a BVLC-layout Caffe source tree and add the GenerativeLoss layer to it.

  python3 apply_generative_loss.py [--check] [--git] [--field N] CAFFE_ROOT

Applies the patch series listed in `series` (next to this script) to
CAFFE_ROOT, after checking that it can:

* CAFFE_ROOT has Caffe's layout (src/caffe/proto/caffe.proto, ...);
* parts already in the tree are recognised: a tree that has the whole series
  is left alone (exit 0: a second run is a no-op); a tree with parts of it,
  e.g. caffe.proto edited by hand, gets only the missing patches; a tree with
  a different GenerativeLoss (another version) is refused, naming the files;
* the field number of generative_loss_param is not used by another field of
  LayerParameter (nor reserved): if it is, the message names that field and
  its line and suggests a free number for --field;
* every remaining patch applies (dry run) before any file is changed.

Default: applies with `patch -p1` (files change, nothing is committed).
--git:   applies with `git am -3` (one commit per patch; CAFFE_ROOT may be a
         sub-folder of the repository).
--check: only reports what it would do.

Exit status: 0 applied or already applied, 1 refused (the message says why),
2 bad command line. Needs Python >= 3.6 and `patch` (or git for --git).
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

PROTO = "src/caffe/proto/caffe.proto"
LAYOUT = (PROTO, "include/caffe/layers", "src/caffe/layers", "src/caffe/test")
MESSAGE = "GenerativeLossParameter"
FIELD = "generative_loss_param"
# protobuf: field numbers 1 .. 2^29 - 1, except 19000-19999 (reserved by it)
MAX_FIELD = (1 << 29) - 1
PROTOBUF_RESERVED = range(19000, 20000)


class Refused(Exception):
    """The tree cannot take the series; the message says why and what to do."""


# ---- the series ---------------------------------------------------------------

class FileDiff(object):
    """One file's part of a patch: its path, whether it creates the file, and
    (for a new file) the content it creates."""

    def __init__(self, path, new, lines):
        self.path = path
        self.new = new
        self.lines = lines  # the diff lines of this file, headers included

    def new_content(self):
        out = []
        body = False
        for line in self.lines:
            if line.startswith("@@"):
                body = True
            elif body and line.startswith("+"):
                out.append(line[1:])
            elif body and line.startswith("\\") and out:
                out[-1] = out[-1].rstrip("\n")  # "\ No newline at end of file"
        return "".join(out)

    def added_lines(self):
        return [l[1:] for l in self.lines if l.startswith("+") and not l.startswith("+++")]


def split_patch(text):
    """The per-file diffs of a `git format-patch` file (its mail part skipped)."""
    files = []
    current = None
    for line in text.splitlines(True):
        m = re.match(r"diff --git a/(\S+) b/(\S+)", line)
        if m:
            current = FileDiff(m.group(2), False, [line])
            files.append(current)
        elif current is not None:
            if line == "-- \n":       # a mail signature ends the diff
                current = None
                continue
            if line.startswith("new file mode"):
                current.new = True
            current.lines.append(line)
    return files


def read_series(folder):
    """[(file name, text)] of the patches listed in folder/series, in order."""
    series = os.path.join(folder, "series")
    if not os.path.isfile(series):
        raise Refused("%s is missing: run this script from the exported folder "
                      "(it lists the patches to apply)." % series)
    out = []
    with open(series) as f:
        for name in f:
            name = name.strip()
            if not name or name.startswith("#"):
                continue
            path = os.path.join(folder, name)
            if not os.path.isfile(path):
                raise Refused("series names %s, but %s does not exist." % (name, path))
            with open(path) as p:
                out.append((name, p.read()))
    if not out:
        raise Refused("%s lists no patches." % series)
    return out


FIELD_LINE = re.compile(r"^(\s*optional\s+%s\s+%s\s*=\s*)(\d+)(\s*;.*)$" % (MESSAGE, FIELD))


def series_field_number(patch_text):
    for line in patch_text.splitlines():
        m = FIELD_LINE.match(line[1:]) if line.startswith("+") else None
        if m:
            return int(m.group(2))
    return None


def renumber_field(patch_text, number, old_number=None):
    """The patch with generative_loss_param moved to field `number`.

    The comment lines added right above the field (which explain the original
    number) are replaced by one that says why this number was used, and the
    hunk's line counts are recomputed, so the result is a valid patch.
    """
    lines = patch_text.splitlines(True)
    idx = [i for i, l in enumerate(lines) if l.startswith("+") and FIELD_LINE.match(l[1:].rstrip("\n"))]
    if len(idx) != 1:
        raise Refused("the caffe.proto patch should add exactly one %s line; found %d."
                      % (FIELD, len(idx)))
    i = idx[0]
    m = FIELD_LINE.match(lines[i][1:].rstrip("\n"))
    old = int(m.group(2))
    if old_number is not None and old != old_number:
        raise Refused("expected field %d in the patch, found %d." % (old_number, old))
    if number == old:
        return patch_text
    indent = re.match(r"\s*", m.group(1)).group(0)
    start = i
    while start > 0 and re.match(r"\+\s*//", lines[start - 1]):
        start -= 1
    comment = ["+%s// GenerativeLoss (Generative Caffe). Field %d because this tree already\n" % (indent, number),
               "+%s// uses %d, Generative Caffe's own number; prototxt files are the same,\n" % (indent, old),
               "+%s// binary nets with this parameter are not interchangeable with it.\n" % indent]
    new_line = "+%s%d%s\n" % (m.group(1), number, m.group(3))
    lines[start:i + 1] = comment + [new_line]
    return _recount_hunks("".join(lines))


HUNK = re.compile(r"@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@(.*)$")


def _recount_hunks(text):
    """Rewrite every @@ header's line counts, and its new-file start line, from
    the hunk bodies (after lines were added or removed)."""
    lines = text.splitlines(True)
    out = []
    delta = 0  # lines added minus removed by the earlier hunks of this file
    i = 0
    while i < len(lines):
        if lines[i].startswith("diff --git"):
            delta = 0
        m = HUNK.match(lines[i].rstrip("\n"))
        if not m:
            out.append(lines[i])
            i += 1
            continue
        j = i + 1
        old = new = 0
        while (j < len(lines) and lines[j][:1] in (" ", "+", "-", "\\")
               and not lines[j].startswith("-- \n")):
            kind = lines[j][:1]
            old += kind in (" ", "-")
            new += kind in (" ", "+")
            j += 1
        old_start = int(m.group(1))
        if old_start == 0:
            new_start = 1 if new else 0          # a new file
        else:                                    # (no old lines: starts after old_start)
            new_start = old_start + delta + (1 if old == 0 else 0)
        out.append("@@ -%d,%d +%d,%d @@%s\n" % (old_start, old, new_start, new, m.group(3)))
        out.extend(lines[i + 1:j])
        delta += new - old
        i = j
    return "".join(out)


# ---- caffe.proto ----------------------------------------------------------------

def _strip_comments(text):
    """The text with // and /* */ comments blanked (line numbers kept); string
    literals are kept as they are."""
    out = []
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == '"' or c == "'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            out.append(text[i:j + 1])
            i = j + 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("\n" * text.count("\n", i, j))
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


FIELD_DEF = re.compile(r"\b(optional|required|repeated)\s+([\w.]+)\s+(\w+)\s*=\s*(\d+)\s*(\[[^\]]*\])?\s*;")


def message_body(proto, name):
    """(start line, text) of the body of top-level message `name`, or None.
    `proto` has its comments stripped."""
    m = re.search(r"(?m)^\s*message\s+%s\s*\{" % re.escape(name), proto)
    if not m:
        return None
    depth = 1
    i = m.end()
    while i < len(proto) and depth:
        if proto[i] == "{":
            depth += 1
        elif proto[i] == "}":
            depth -= 1
        i += 1
    return proto.count("\n", 0, m.end()) + 1, proto[m.end():i - 1]


def top_level_fields(body_start, body):
    """[(number, name, type, line, options)] of the fields at the top level of
    a message body (fields of nested messages are left out)."""
    flat = []
    depth = 0
    for ch in body:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        flat.append(ch if depth == 0 or ch in "\n" else " ")
    flat = "".join(flat)
    out = []
    for m in FIELD_DEF.finditer(flat):
        line = body_start + flat.count("\n", 0, m.start())
        out.append((int(m.group(4)), m.group(3), m.group(2), line,
                    re.sub(r"\s+", "", m.group(5) or "")))
    return out


def reserved_numbers(body):
    """The field numbers a message body reserves, as (low, high) ranges."""
    out = []
    for m in re.finditer(r"\breserved\s+([^;]*);", body):
        for part in m.group(1).split(","):
            part = part.strip()
            r = re.match(r"^(\d+)(?:\s+to\s+(\d+|max))?$", part)
            if r:
                low = int(r.group(1))
                high = r.group(2)
                out.append((low, MAX_FIELD if high == "max" else int(high or low)))
    return out


def free_number(fields, reserved, start):
    used = {f[0] for f in fields}
    n = start
    while (n in used or n in PROTOBUF_RESERVED or any(lo <= n <= hi for lo, hi in reserved)) and n <= MAX_FIELD:
        n += 1
    return n


def proto_state(proto_text, series_message_fields):
    """What caffe.proto holds of the series: ('absent', None),
    ('applied', field number) or ('different', reason)."""
    proto = _strip_comments(proto_text)
    layer = message_body(proto, "LayerParameter")
    if layer is None:
        raise Refused("%s has no message LayerParameter: is this Caffe's caffe.proto?" % PROTO)
    fields = top_level_fields(*layer)
    ours = [f for f in fields if f[1] == FIELD]
    msg = message_body(proto, MESSAGE)
    if not ours and msg is None:
        return "absent", None
    if ours and msg is None:
        return "different", ("LayerParameter already has a field %s (line %d) but there is no "
                             "message %s" % (FIELD, ours[0][3], MESSAGE))
    if msg is not None and not ours:
        return "different", ("%s already defines a message %s (line %d), but LayerParameter has "
                             "no field %s" % (PROTO, MESSAGE, msg[0], FIELD))
    if ours[0][2] != MESSAGE:
        return "different", ("LayerParameter's field %s (line %d) has type %s, not %s"
                             % (FIELD, ours[0][3], ours[0][2], MESSAGE))
    theirs = sorted((f[0], f[1], f[2], f[4]) for f in top_level_fields(*msg))
    if theirs != sorted(series_message_fields):
        return "different", ("the message %s at line %d has other fields than this series' "
                             "(another version of GenerativeLoss?)" % (MESSAGE, msg[0]))
    return "applied", ours[0][0]


def series_message_fields(proto_patch_text):
    """The fields of message GenerativeLossParameter as the series adds it."""
    added = "".join(l[1:] for l in proto_patch_text.splitlines(True)
                    if l.startswith("+") and not l.startswith("+++"))
    body = message_body(_strip_comments(added), MESSAGE)
    if body is None:
        raise Refused("the caffe.proto patch does not add message %s." % MESSAGE)
    return [(f[0], f[1], f[2], f[4]) for f in top_level_fields(*body)]


def field_conflict(proto_text, number):
    """None if LayerParameter can take field `number`, else a message naming
    what uses it and a free number to use instead."""
    proto = _strip_comments(proto_text)
    start, body = message_body(proto, "LayerParameter")
    fields = top_level_fields(start, body)
    reserved = reserved_numbers(body)
    suggestion = free_number(fields, reserved, max(number, 7001))
    if number < 1 or number > MAX_FIELD or number in PROTOBUF_RESERVED:
        return ("field number %d is not allowed by protobuf (1 to %d, without 19000-19999); "
                "use --field %d" % (number, MAX_FIELD, suggestion))
    for f in fields:
        if f[0] == number:
            return ("LayerParameter already uses field number %d for %s (%s line %d); "
                    "rerun with --field %d (the next free number from %d)"
                    % (number, f[1], PROTO, f[3], suggestion, max(number, 7001)))
    for lo, hi in reserved:
        if lo <= number <= hi:
            return ("LayerParameter reserves field numbers %d to %d (%s); rerun with --field %d"
                    % (lo, hi, PROTO, suggestion))
    return None


# ---- the tree -------------------------------------------------------------------

def run(cmd, cwd, input_text=None):
    try:
        p = subprocess.run(cmd, cwd=cwd, input=input_text, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, universal_newlines=True)
    except OSError as e:
        raise Refused("could not run %s: %s" % (cmd[0], e))
    return p.returncode, p.stdout


def git_prefix(root):
    """CAFFE_ROOT relative to its git work tree ('' at the top)."""
    code, out = run(["git", "rev-parse", "--show-prefix"], root)
    if code != 0:
        raise Refused("--git: %s is not inside a git work tree (%s). Use the default "
                      "(patch -p1) or `git init` it first." % (root, out.strip()))
    return out.strip().rstrip("/")


def plan(root, patches, field):
    """Checks the tree; returns (patches still to apply, messages about the
    rest). Raises Refused when the tree cannot take the series."""
    missing = [p for p in LAYOUT if not os.path.exists(os.path.join(root, p))]
    if missing:
        raise Refused("%s does not look like a Caffe source tree (BVLC layout): missing %s."
                      % (root, ", ".join(missing)))
    with open(os.path.join(root, PROTO)) as f:
        proto_text = f.read()
    notes = []
    todo = []
    different = []
    for name, text in patches:
        done = []
        absent = []
        for fd in split_patch(text):
            target = os.path.join(root, fd.path)
            if fd.path == PROTO:
                state, detail = proto_state(proto_text, series_message_fields(text))
                if state == "applied":
                    done.append("%s (%s = %d)" % (PROTO, FIELD, detail))
                    if detail != field:
                        notes.append("caffe.proto already has %s with field %d; kept." % (FIELD, detail))
                elif state == "different":
                    different.append("%s: %s" % (PROTO, detail))
                else:
                    conflict = field_conflict(proto_text, field)
                    if conflict:
                        raise Refused(conflict + ".")
                    absent.append(PROTO)
            elif fd.new:
                if not os.path.exists(target):
                    absent.append(fd.path)
                else:
                    with open(target) as f:
                        same = f.read() == fd.new_content()
                    if same:
                        done.append(fd.path)
                    else:
                        different.append("%s exists with other content" % fd.path)
            else:
                raise Refused("%s changes %s, which this script does not know how to check."
                              % (name, fd.path))
        if done and absent:
            different.append("%s is partly in the tree: %s present, %s missing"
                             % (name, ", ".join(done), ", ".join(absent)))
        elif absent:
            todo.append((name, text))
        else:
            notes.append("%s: already applied (%s)." % (name, ", ".join(done)))
    if different:
        raise Refused("%s already has a GenerativeLoss that differs from this series:\n  %s\n"
                      "Remove it first (e.g. `git revert` its commits, or `patch -R -p1` with the "
                      "diff it came from), then rerun." % (root, "\n  ".join(different)))
    return todo, notes


def apply_series(root, todo, use_git, check_only, field, default_field):
    """Dry-runs and (unless check_only) applies the patches in todo."""
    with tempfile.TemporaryDirectory(prefix="generative-loss-") as tmp:
        files = []
        for name, text in todo:
            if series_field_number(text) is not None and field != default_field:
                text = renumber_field(text, field, default_field)
            path = os.path.join(tmp, name)
            with open(path, "w") as f:
                f.write(text)
            files.append((name, path))
        if use_git:
            prefix = git_prefix(root)
            extra = ["--directory=" + prefix] if prefix else []
            code, out = run(["git", "rev-parse", "--git-path", "rebase-apply"], root)
            if code == 0 and os.path.exists(os.path.join(root, out.strip())):
                raise Refused("a `git am` or rebase is in progress in %s; finish it or run "
                              "`git am --abort` first." % root)
            code, _ = run(["git", "diff", "--cached", "--quiet"], root)
            if code != 0:
                raise Refused("the git index of %s has staged changes; commit or stash them "
                              "first (git am commits each patch)." % root)
            if check_only:
                for name, path in files:
                    code, out = run(["git", "apply", "--check"] + extra + [path], root)
                    if code != 0:
                        raise Refused(_does_not_apply(name, out) + "\n(`git am -3`, which --git "
                                      "uses, may still merge it when your repository has BVLC's "
                                      "history: run without --check to try; a failure is undone.)")
                return
            # git am -3 can merge caffe.proto where plain context does not match
            # (a fork of BVLC's history); on failure it is aborted, which
            # restores HEAD, index and files as they were.
            code, out = run(["git", "am", "-3"] + extra + [p for _, p in files], root)
            if code != 0:
                run(["git", "am", "--abort"], root)
                raise Refused(_does_not_apply("the series (git am -3, aborted: nothing changed)", out))
        else:
            for name, path in files:
                code, out = run(["patch", "-p1", "--dry-run", "--forward", "--batch", "-i", path], root)
                if code != 0:
                    raise Refused(_does_not_apply(name, out))
            if check_only:
                return
            for name, path in files:
                code, out = run(["patch", "-p1", "--forward", "--batch", "--no-backup-if-mismatch",
                                 "-i", path], root)
                if code != 0:
                    raise Refused("patch -p1 failed on %s after a clean dry run:\n%s" % (name, out))


def _does_not_apply(name, output):
    msg = "%s does not apply:\n  %s" % (name, output.strip().replace("\n", "\n  "))
    if PROTO in output:
        msg += ("\nYour caffe.proto differs from BVLC's around the lines the patch changes (after "
                "flatten_param in message LayerParameter, after message FlattenParameter). Add "
                "the lines that %s adds to %s by hand (the field inside message LayerParameter, "
                "the message at the top level), then rerun: the script sees the proto change as "
                "applied and adds the other files." % (name, PROTO))
    return msg


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", metavar="CAFFE_ROOT",
                        help="the top folder of your Caffe source tree (where src/ and include/ are)")
    parser.add_argument("--check", action="store_true",
                        help="check and dry-run only; change nothing")
    parser.add_argument("--git", action="store_true",
                        help="apply with `git am -3` (one commit per patch) instead of `patch -p1`")
    parser.add_argument("--field", type=int, default=None,
                        help="field number for LayerParameter.generative_loss_param "
                             "(default: the series' own, 7001 unless exported otherwise); "
                             "use another when your caffe.proto already uses it")
    args = parser.parse_args(argv)
    root = os.path.abspath(args.root)
    try:
        if not os.path.isdir(root):
            raise Refused("%s is not a folder." % root)
        patches = read_series(here)
        default_field = next((n for n in (series_field_number(t) for _, t in patches) if n is not None), None)
        if default_field is None:
            raise Refused("no patch in the series adds %s to caffe.proto." % FIELD)
        field = default_field if args.field is None else args.field
        todo, notes = plan(root, patches, field)
        for note in notes:
            print("apply_generative_loss: " + note)
        if not todo:
            print("apply_generative_loss: %s already has the whole series; nothing to do." % root)
            return 0
        apply_series(root, todo, args.git, args.check, field, default_field)
    except Refused as e:
        print("apply_generative_loss: ERROR: %s" % e, file=sys.stderr)
        return 1
    names = ", ".join(name for name, _ in todo)
    if args.check:
        print("apply_generative_loss: %s can take %s (dry run passed; nothing changed)." % (root, names))
    else:
        how = "git am" if args.git else "patch -p1"
        print("apply_generative_loss: applied %s to %s with %s (%s = %d). Rebuild Caffe (re-run "
              "cmake first: it lists source files when it configures)." % (names, root, how, FIELD, field))
    return 0


if __name__ == "__main__":
    sys.exit(main())
