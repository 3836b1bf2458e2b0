"""Write GenerativeLoss as a patch series for a BVLC-layout Caffe tree.

The single source of truth is this repository: the layer's files under caffe/
(the overlay has BVLC's layout, so caffe/<path> becomes <path>) and the
caffe.proto change in caffe/patches/generative-loss-param.patch, read from a
git revision (default HEAD) or from the working tree. They are committed, one
concern per commit, in a scratch git repository on top of the pinned
upstream's own caffe.proto (from the verified orig tarball: so the series has
BVLC's line numbers and blob hashes, which lets `git am -3` merge into a fork
of BVLC's history), and `git format-patch` writes the series. The proto
patch's two blocks (the field, the message) are placed by upstream's
alphabetical order rather than at the ends where our own patch puts them, so
that forks which append there still take the series (place_proto_blocks). Nothing in the
output is kept by hand.

Output (a folder, replaced atomically):
  0001-...patch 0002-...patch 0003-...patch   git am / patch -p1, in order
  series                                     their order
  generative-loss.diff                       all three as one diff (patch -p1)
  apply_generative_loss.py                   checks the tree, then applies
  README.md                                  for the receiver
"""
import os
import re
import shutil
import subprocess
import tarfile
import tempfile

from . import apply_generative_loss as receiver

PROTO_PATCH = "caffe/patches/generative-loss-param.patch"
PROTO = "src/caffe/proto/caffe.proto"
LAYER_FILES = ("include/caffe/layers/generative_loss_layer.hpp",
               "src/caffe/layers/generative_loss_layer.cpp",
               "src/caffe/layers/generative_loss_layer.cu")
TEST_FILES = ("src/caffe/test/test_generative_loss_layer.cpp",)
DIFF_NAME = "generative-loss.diff"
HERE = os.path.dirname(os.path.abspath(__file__))
README_TEMPLATE = os.path.join(HERE, "README.in.md")


class ExportError(Exception):
    """The export cannot be written; the message says why."""


def _git(args, cwd, env=None, binary=False):
    p = subprocess.run(["git"] + args, cwd=cwd, env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    if p.returncode != 0:
        raise ExportError("git %s failed in %s: %s" % (" ".join(args), cwd,
                                                        p.stderr.decode(errors="replace").strip()))
    return p.stdout if binary else p.stdout.decode()


def isolated_git_env(tmp):
    """An environment in which no user or system git configuration (diff
    prefixes, signatures, hooks, ...) changes what format-patch writes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(HOME=tmp, GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull,
               LC_ALL="C", TZ="UTC")
    return env


class Source(object):
    """The repository's files at a revision, or in its working tree."""

    def __init__(self, repo, rev="HEAD", worktree=False):
        self.repo = repo
        self.rev = rev
        self.worktree = worktree
        self.commit = _git(["rev-parse", "--verify", rev + "^{commit}"], repo).strip()
        self._cache = {}

    def read(self, path):
        if path not in self._cache:
            self._cache[path] = self._read(path)
        return self._cache[path]

    def _read(self, path):
        if self.worktree:
            full = os.path.join(self.repo, path)
            if not os.path.isfile(full):
                raise ExportError("%s is missing from the working tree." % full)
            with open(full, "rb") as f:
                return f.read()
        try:
            return _git(["show", "%s:%s" % (self.commit, path)], self.repo, binary=True)
        except ExportError:
            raise ExportError("%s is not in commit %s (commit it, or export with --worktree)."
                              % (path, self.commit[:12]))

    def authorship(self, paths):
        """(name, email, raw date) of the last commit at the revision touching paths."""
        out = _git(["log", "-1", "--format=%an%n%ae%n%ad", "--date=raw", self.commit, "--"]
                   + list(paths), self.repo).splitlines()
        if len(out) < 3:
            raise ExportError("no commit in %s touches %s." % (self.commit[:12], ", ".join(paths)))
        return out[0], out[1], out[2]

    def uncommitted(self, paths):
        """Those of paths whose working-tree copy differs from the revision."""
        out = _git(["status", "--porcelain", "--"] + list(paths), self.repo)
        return [line[3:] for line in out.splitlines() if line.strip()]


def read_pin(repo):
    values = {}
    with open(os.path.join(repo, "scripts", "upstream.env")) as f:
        for line in f:
            line = line.strip()
            if "=" in line and not line.startswith("#"):
                key, value = line.split("=", 1)
                values[key] = value
    return values


def upstream_cache(repo):
    return os.environ.get("CAFFE_UPSTREAM_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
        "generative-caffe", "upstream")


def fetch_upstream(repo, cache):
    """Runs scripts/fetch_upstream.sh (a no-op when the cache is verified);
    returns the orig tarball's path."""
    p = subprocess.run([os.path.join(repo, "scripts", "fetch_upstream.sh"), cache],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    if p.returncode != 0:
        raise ExportError("the pinned upstream Caffe could not be fetched (the series is made "
                          "against its caffe.proto):\n" + p.stdout.strip())
    return os.path.join(cache, read_pin(repo)["UPSTREAM_ORIG"])


def orig_member(tarball, path):
    """The bytes of `path` in the orig tarball (with or without a top folder)."""
    with tarfile.open(tarball) as tar:
        for member in tar.getmembers():
            name = member.name[2:] if member.name.startswith("./") else member.name
            if member.isfile() and (name == path or name.split("/", 1)[-1] == path):
                return tar.extractfile(member).read()
    raise ExportError("%s has no %s." % (tarball, path))


def upstream_name(pin):
    """'BVLC Caffe 99bd997 (2018-08-21; ...)' from the pin's Debian version."""
    m = re.search(r"\+git(\d{4})(\d\d)(\d\d)\.([0-9a-f]+)", pin["UPSTREAM_VERSION"])
    what = ("commit %s of %s-%s-%s" % (m.group(4), m.group(1), m.group(2), m.group(3)) if m
            else pin["UPSTREAM_VERSION"])
    return ("BVLC Caffe %s, as in the orig tarball of Debian's %s %s"
            % (what, pin["UPSTREAM_PACKAGE"], pin["UPSTREAM_VERSION"]))


def for_receiver(diff_text):
    """Our proto comments point at docs/ of this repository, which the
    receiver's tree does not have: say whose docs they are."""
    return "".join(
        line.replace("docs/multi_gpu.md", "Generative Caffe's docs/multi_gpu.md")
        if line.startswith("+") else line for line in diff_text.splitlines(True))


def proto_blocks(patch_text):
    """(field lines, message lines) that our caffe.proto patch adds: the runs of
    added lines holding `generative_loss_param = N;` and `message
    GenerativeLossParameter` (leading and trailing blank lines dropped). The
    patch must only add lines, in these two runs."""
    runs = []
    current = None
    in_diff = False
    for line in patch_text.splitlines(True):
        if line.startswith("+++ "):
            in_diff = True
        elif not in_diff or line.startswith("@@"):
            current = None
        elif line.startswith("+"):
            if current is None:
                current = []
                runs.append(current)
            current.append(line[1:])
        elif line.startswith("-"):
            raise ExportError("%s removes lines from %s; the export only knows how to add "
                              "its two blocks (update gencaffe/patch_export/export.py)."
                              % (PROTO_PATCH, PROTO))
        else:
            current = None
    field = [r for r in runs if receiver.series_field_number("".join("+" + l for l in r))]
    message = [r for r in runs if any(re.match(r"message\s+%s\b" % receiver.MESSAGE, l) for l in r)]
    if len(runs) != 2 or len(field) != 1 or len(message) != 1 or field[0] is message[0]:
        raise ExportError("%s should add two blocks to %s, the field `optional %s %s = N;` in "
                          "LayerParameter and the message %s; found %d block(s)."
                          % (PROTO_PATCH, PROTO, receiver.MESSAGE, receiver.FIELD,
                             receiver.MESSAGE, len(runs)))

    def trim(lines):
        while lines and not lines[0].strip():
            lines = lines[1:]
        while lines and not lines[-1].strip():
            lines = lines[:-1]
        return lines
    return trim(field[0]), trim(message[0])


# Where the blocks go in upstream's caffe.proto: by its alphabetical order, the
# field after flatten_param and the message after FlattenParameter (before
# HDF5DataParameter's comment). Our own patch appends both at the ends (of
# LayerParameter, of the file); a series with its context there would be
# rejected by every fork that appends its own fields or messages the same way
# (a hunk at the end of a file must match the end of the file).
FIELD_AFTER = re.compile(r"^\s*optional\s+FlattenParameter\s+flatten_param\s*=\s*\d+\s*;")
MESSAGE_BEFORE = re.compile(r"^message\s+HDF5DataParameter\s*\{")


def place_proto_blocks(proto, field_block, message_block):
    lines = proto.splitlines(True)
    after = [i for i, l in enumerate(lines) if FIELD_AFTER.match(l)]
    before = [i for i, l in enumerate(lines) if MESSAGE_BEFORE.match(l)]
    if len(after) != 1 or len(before) != 1 or after[0] > before[0]:
        raise ExportError("the pinned upstream caffe.proto has no single `flatten_param` field "
                          "followed by `message HDF5DataParameter`, where the export places "
                          "its blocks (update gencaffe/patch_export/export.py).")
    at = before[0]
    while at > 0 and lines[at - 1].startswith("//"):
        at -= 1  # above the message's own comment
    lines[at:at] = message_block + ["\n"]
    lines[after[0] + 1:after[0] + 1] = field_block
    return "".join(lines)


def _commit(scratch, env, author, subject, body):
    name, email, date = author
    env = dict(env, GIT_AUTHOR_NAME=name, GIT_AUTHOR_EMAIL=email, GIT_AUTHOR_DATE=date,
               GIT_COMMITTER_NAME=name, GIT_COMMITTER_EMAIL=email, GIT_COMMITTER_DATE=date)
    _git(["add", "-A"], scratch, env)
    _git(["commit", "-q", "--no-verify", "-m", subject + "\n\n" + body], scratch, env)


def _wrap(text, width=72):
    out = []
    for para in text.strip().split("\n\n"):
        line = ""
        for word in para.split():
            if line and len(line) + 1 + len(word) > width:
                out.append(line)
                line = word
            else:
                line = word if not line else line + " " + word
        out.append(line)
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def build_series(source, orig_tarball, scratch, out):
    """Commits the three concerns in a scratch repository and writes the
    series into `out`. Returns a dict of facts for the README."""
    env = isolated_git_env(scratch)
    repo_dir = os.path.join(scratch, "tree")
    os.makedirs(repo_dir)
    _git(["init", "-q", "--template=", "-b", "export"], repo_dir, env)
    _git(["config", "core.autocrlf", "false"], repo_dir, env)

    pin = read_pin(source.repo)
    proto_path = os.path.join(repo_dir, PROTO)
    os.makedirs(os.path.dirname(proto_path))
    with open(proto_path, "wb") as f:
        f.write(orig_member(orig_tarball, PROTO))
    upstream = upstream_name(pin)
    _commit(repo_dir, env, source.authorship([PROTO_PATCH]), "upstream caffe.proto",
            "From %s." % upstream)
    base = _git(["rev-parse", "HEAD"], repo_dir, env).strip()

    # 1: caffe.proto: our patch's two added blocks, placed by upstream's
    # alphabetical order (see place_proto_blocks)
    patch_text = source.read(PROTO_PATCH).decode()
    field_block, message_block = proto_blocks(for_receiver(patch_text))
    field = receiver.series_field_number("".join("+" + l for l in field_block))
    with open(proto_path) as f:
        proto = f.read()
    with open(proto_path, "w") as f:
        f.write(place_proto_blocks(proto, field_block, message_block))
    fork = "Exported from Generative Caffe, commit %s." % source.commit[:12]
    _commit(repo_dir, env, source.authorship([PROTO_PATCH]),
            "caffe.proto: GenerativeLossParameter (LayerParameter field %d)" % field,
            _wrap("LayerParameter gets generative_loss_param, field %d, and the message "
                  "GenerativeLossParameter holds the layer's semi-supervised parameters "
                  "(semi_supervised, unlabeled_label, unlabeled_weight, class_prior; Dai, Lu & Wu "
                  "2016, Eq. 19). Upstream allocates LayerParameter's layer-specific IDs upward from "
                  "100 (149 is its next); %d is far from them and is the number Generative Caffe "
                  "uses, so its prototxt and binary nets read the same here. If your tree already "
                  "uses %d, apply with apply_generative_loss.py --field N."
                  % (field, field, field) + "\n\n" + fork))

    # 2: the layer, 3: its gtest
    for paths, subject, body in (
            (LAYER_FILES, "GenerativeLoss layer: the generative gradient of Dai, Lu & Wu",
             "A drop-in replacement for SoftmaxWithLoss that trains the classifier as a "
             "generative model p_y(x) ~ exp(f_y(x)) q(x): the loss is the negated batch estimate "
             "of the generative log-likelihood (Statistics and Its Interface 9 (2016), Eq. 15) and "
             "its gradient a softmax down the batch for each class column (Eq. 10/14). An optional "
             "second top reports the effective sample size. loss_weight and "
             "loss_param { ignore_label normalization } work as in SoftmaxWithLoss; "
             "generative_loss_param adds the semi-supervised mode of Eq. 19. CPU and CUDA."),
            (TEST_FILES, "GenerativeLoss gtest",
             "Forward against the definition, gradient checks over all dtypes and devices "
             "(normalizations, ignore_label, semi-supervised mode, ESS top), death tests for bad "
             "input, and (CUDA builds) GPU against CPU on random problems.")):
        for path in paths:
            full = os.path.join(repo_dir, path)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "wb") as f:
                f.write(source.read("caffe/" + path))
        _commit(repo_dir, env, source.authorship(["caffe/" + p for p in paths]), subject,
                _wrap(body + "\n\n" + fork))

    names = _git(["format-patch", "--zero-commit", "--no-signature", "-o", out,
                  base + "..HEAD"], repo_dir, env).split()
    names = [os.path.basename(n) for n in names]
    with open(os.path.join(out, DIFF_NAME), "wb") as f:
        f.write(_git(["diff", base, "HEAD"], repo_dir, env, binary=True))
    with open(os.path.join(out, "series"), "w") as f:
        f.write("# apply in this order (git am, or patch -p1 from the Caffe root)\n")
        f.write("".join(n + "\n" for n in names))
    subjects = _git(["log", "--reverse", "--format=%s", base + "..HEAD"], repo_dir, env).splitlines()
    return {"field": field, "patches": names, "subjects": subjects, "upstream": upstream,
            "commit": source.commit}


def render_readme(facts, template=README_TEMPLATE):
    with open(template) as f:
        text = f.read()
    listing = "\n".join("* `%s`: %s" % (n, s) for n, s in zip(facts["patches"], facts["subjects"]))
    values = dict(facts, patch_list=listing, commit_short=facts["commit"][:12],
                  first_patch=facts["patches"][0])
    text = re.sub(r"\{\{(\w+)\}\}", lambda m: str(values[m.group(1)]), text)
    return text


def export(repo, out, rev="HEAD", worktree=False, cache=None, log=print):
    """Writes the series into `out` (replacing it atomically). Returns the facts."""
    source = Source(repo, rev, worktree)
    paths = [PROTO_PATCH] + ["caffe/" + p for p in LAYER_FILES + TEST_FILES]
    for path in paths:
        source.read(path)  # all there, before anything is fetched or written
    if not worktree:
        dirty = source.uncommitted(paths)
        if dirty:
            log("export_patch: note: exporting commit %s; uncommitted changes in %s are not in "
                "the export (use --worktree to take them)." % (source.commit[:12], ", ".join(dirty)))
    tarball = fetch_upstream(repo, cache or upstream_cache(repo))
    out = os.path.abspath(out)
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="." + os.path.basename(out) + ".", dir=parent)
    try:
        staged = os.path.join(tmp, "out")
        os.makedirs(staged)
        facts = build_series(source, tarball, os.path.join(tmp, "scratch"), staged)
        facts["worktree"] = worktree
        with open(os.path.join(staged, "README.md"), "w") as f:
            f.write(render_readme(facts))
        shutil.copyfile(receiver.__file__.replace(".pyc", ".py"),
                        os.path.join(staged, "apply_generative_loss.py"))
        os.chmod(os.path.join(staged, "apply_generative_loss.py"), 0o755)
        old = os.path.join(tmp, "old")
        if os.path.exists(out):
            os.rename(out, old)
        os.rename(staged, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return facts
