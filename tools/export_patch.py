#!/usr/bin/env python3
"""Export the GenerativeLoss layer as a patch series for another Caffe tree.

Writes into OUT (default dist/generative-loss-patch/, replaced atomically):
  000N-*.patch              git format-patch series: caffe.proto change, layer, gtest
                            (git am, or patch -p1 from the Caffe root, in order)
  series                    their order
  generative-loss.diff      the whole series as one diff (patch -p1)
  apply_generative_loss.py  checks a tree (layout, already applied, field
                            number taken) and applies with patch -p1 or git am -3
  README.md                 for the receiver: apply, build, prototxt, gtest

Everything is generated from this repository: the layer's files under caffe/
and caffe/patches/generative-loss-param.patch, at a git revision (default
HEAD; --worktree for uncommitted edits), on top of the pinned upstream's own
caffe.proto (scripts/fetch_upstream.sh: a no-op once cached and verified). The
same revision gives byte-identical output.
"""
import argparse
import os
import sys

from repo_paths import REPO  # noqa: E402,F401  (python/ on sys.path)

from gencaffe.patch_export import export  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join(REPO, "dist", "generative-loss-patch"),
                        help="output folder, replaced as a whole (default: %(default)s)")
    parser.add_argument("--rev", default="HEAD",
                        help="the git revision whose layer files and proto patch are exported "
                             "(default: %(default)s)")
    parser.add_argument("--worktree", action="store_true",
                        help="export the working-tree files instead of --rev's "
                             "(for trying uncommitted edits)")
    parser.add_argument("--cache-dir", default=None,
                        help="the verified upstream download (default: $CAFFE_UPSTREAM_CACHE or "
                             "~/.cache/generative-caffe/upstream, as scripts/fetch_upstream.sh)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        facts = export.export(REPO, args.out, rev=args.rev, worktree=args.worktree,
                              cache=args.cache_dir)
    except export.ExportError as e:
        print("export_patch: ERROR: %s" % e, file=sys.stderr)
        return 1
    source = "working tree on " if args.worktree else "commit "
    print("export_patch: wrote %s (%s%s; LayerParameter field %d):" % (
        os.path.relpath(args.out), source, facts["commit"][:12], facts["field"]))
    for name in facts["patches"] + ["series", export.DIFF_NAME, "apply_generative_loss.py", "README.md"]:
        print("  " + name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
