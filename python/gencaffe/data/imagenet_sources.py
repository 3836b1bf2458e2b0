"""Find and check the inputs of an ImageNet-style data set (no Caffe needed).

Accepted layouts, per split:

* a class tree: ``train/<wnid>/*.JPEG`` (a val tree ``val/<wnid>/*`` too); the
  classes are the folder names, label i = the i-th in sorted order, as in
  Caffe's ilsvrc12 ``synsets.txt``;
* a list file, the format ``convert_imageset`` reads: one ``relative/path LABEL``
  per line, paths relative to the split's folder. Caffe's aux ``train.txt``
  (``n01440764/n01440764_10026.JPEG 0``) and ``val.txt``
  (``ILSVRC2012_val_00000001.JPEG 65``) are such files. LABEL may also be a class
  name (a wnid), looked up in the classes.

A classes file (``synsets.txt``: one name per line, or ``synset_words.txt``:
name and words) fixes the label order; with a train tree it must list exactly
the tree's class folders.

Tiny ImageNet (CS231n's ``tiny-imagenet-200``) is read in its own layout:
``wnids.txt`` is the classes file (its order is the label order),
``words.txt`` ("wnid<TAB>words", all of WordNet's in the full download) the
names, ``train/<wnid>/images/*.JPEG`` the train tree (images are found below
each class folder at any depth), and ``val/val_annotations.txt``
("val_N.JPEG<TAB>wnid[<TAB>box...]") labels ``val/images/*.JPEG``.

Every problem found is collected and reported together in one SourceError:
missing folders, list lines that are not ``path label``, names missing on
disk, labels out of range, a class count different from the train tree's,
empty classes, duplicates.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Optional, Sequence, Tuple

from .image_check import is_image_name, iter_image_files

MAX_LISTED = 10  # names quoted per problem; the count is always given
# Tiny ImageNet's own file names (its README; CS231n's tiny-imagenet-200.zip)
TINY_CLASSES = "wnids.txt"
TINY_WORDS = "words.txt"
TINY_VAL_LABELS = "val_annotations.txt"


class SourceError(RuntimeError):
    """The inputs do not describe a usable data set; the message lists every problem."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__("\n".join("  - " + p for p in self.problems)
                         if len(self.problems) > 1 else self.problems[0])


@dataclasses.dataclass
class Split:
    name: str                          # "train" or "val"
    root: str                          # absolute folder the relative paths are under
    entries: List[Tuple[str, int]]     # (relative path with '/', label)
    source: Dict[str, str]             # how it was found, for the manifest
    warnings: List[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Sources:
    classes: List[str]                 # label i -> class name (wnid)
    classes_source: str
    words: Dict[str, str]              # class name -> human-readable words, where known
    train: Split
    val: Split


def quote_some(names: Sequence[str], limit: int = MAX_LISTED) -> str:
    shown = ", ".join(str(n) for n in list(names)[:limit])
    more = len(names) - limit
    return shown + (", ... (%d more)" % more if more > 0 else "")


# ---------------------------------------------------------------- files

def read_classes_file(path: str) -> Tuple[List[str], Dict[str, str]]:
    """(names, words) from synsets.txt (a name a line) or synset_words.txt (name words...)."""
    if not os.path.isfile(path):
        raise SourceError(["classes file not found: %s" % path])
    names, words, problems = [], {}, []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            parts = line.strip().split(None, 1)
            if not parts:
                continue
            if parts[0] in words:
                problems.append("%s line %d: class %r listed twice" % (path, number, parts[0]))
            names.append(parts[0])
            words[parts[0]] = parts[1] if len(parts) > 1 else ""
    if not names:
        problems.append("classes file %s lists no classes" % path)
    if problems:
        raise SourceError(problems)
    return names, {k: v for k, v in words.items() if v}


def split_list_line(text: str) -> Optional[Tuple[str, str]]:
    """convert_imageset's ``path label``: the label is the last whitespace-separated
    field (paths may hold spaces, as convert_imageset allows)."""
    parts = text.strip().rsplit(None, 1)
    return (parts[0], parts[1]) if len(parts) == 2 else None


def split_annotation_line(text: str) -> Optional[Tuple[str, str]]:
    """Tiny ImageNet's ``val_annotations.txt``: ``name<TAB>wnid`` and, in the
    original download, four bounding-box numbers after them (ignored)."""
    parts = text.strip().split("\t") if "\t" in text else text.split()
    return (parts[0].strip(), parts[1].strip()) if len(parts) >= 2 and parts[1].strip() else None


LINE_FORMATS = {"list": (split_list_line, "'relative/path LABEL'"),
                "annotations": (split_annotation_line, "'NAME<TAB>WNID[<TAB>box]'")}


def read_list_file(path: str, classes: Optional[Sequence[str]] = None, line_format: str = "list"
                   ) -> Tuple[List[Tuple[str, int]], List[str]]:
    """([(relpath, label)], problems) from a ``path label`` file (line_format
    "list") or a Tiny ImageNet ``val_annotations.txt`` ("annotations").

    The label is an integer, or a class name when `classes` is given. Range
    checks are the caller's (it knows the class count).
    """
    if not os.path.isfile(path):
        return [], ["label/list file not found: %s" % path]
    split_line, expected = LINE_FORMATS[line_format]
    index = {name: i for i, name in enumerate(classes or ())}
    entries, problems, bad_lines, unknown, negative = [], [], [], [], []
    seen = set()
    duplicates = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            text = line.rstrip("\r\n")
            if not text.strip():
                continue
            parts = split_line(text)
            if parts is None:
                bad_lines.append("line %d %r" % (number, text[:60]))
                continue
            name, label_text = parts
            try:
                label = int(label_text)
            except ValueError:
                if label_text in index:
                    label = index[label_text]
                else:
                    unknown.append("line %d %r" % (number, label_text))
                    continue
            if label < 0:
                negative.append("line %d (%d)" % (number, label))
                continue
            name = name.replace("\\", "/")
            if name in seen:
                duplicates.append(name)
                continue
            seen.add(name)
            entries.append((name, label))
    if bad_lines:
        problems.append("%s: %d line(s) are not %s: %s"
                        % (path, len(bad_lines), expected, quote_some(bad_lines)))
    if unknown:
        problems.append("%s: %d label(s) are neither integers nor known class names%s: %s"
                        % (path, len(unknown), "" if classes else " (no classes file given)",
                           quote_some(unknown)))
    if negative:
        problems.append("%s: %d negative label(s): %s" % (path, len(negative), quote_some(negative)))
    if duplicates:
        problems.append("%s: %d path(s) listed more than once: %s"
                        % (path, len(duplicates), quote_some(duplicates)))
    if not entries and not problems:
        problems.append("%s lists no images" % path)
    return entries, problems


# ---------------------------------------------------------------- trees

def class_folders(folder: str) -> List[str]:
    return sorted(d for d in os.listdir(folder)
                  if not d.startswith(".") and os.path.isdir(os.path.join(folder, d)))


def looks_like_class_tree(folder: str) -> bool:
    """True if folder has sub-folders holding images (a val/<wnid>/ tree)."""
    for name in class_folders(folder):
        if any(True for _ in iter_image_files(os.path.join(folder, name))):
            return True
    return False


def scan_class_tree(folder: str, split: str, classes: Optional[Sequence[str]] = None
                    ) -> Tuple[List[str], List[Tuple[str, int]], List[str], List[str]]:
    """(folder classes, [(relpath, label)], problems, warnings) of ``folder/<class>/*``.

    Labels index `classes` if given, else the sorted folder names.
    """
    problems, warnings = [], []
    folders = class_folders(folder)
    loose = [n for n in os.listdir(folder) if is_image_name(n)
             and os.path.isfile(os.path.join(folder, n))]
    if loose:
        warnings.append("%s: %d image file(s) directly in the folder, outside any class folder, "
                        "are ignored: %s" % (folder, len(loose), quote_some(sorted(loose))))
    if not folders:
        tars = [n for n in os.listdir(folder) if n.endswith(".tar")]
        hint = ("; it holds %d .tar files: unpack each n*.tar into a folder of its name first"
                % len(tars)) if tars else ""
        problems.append("%s has no class folders (expected %s/<wnid>/*.JPEG)%s"
                        % (folder, folder, hint))
        return [], [], problems, warnings
    labels = {name: i for i, name in enumerate(classes if classes is not None else folders)}
    entries, empty, unknown = [], [], []
    for name in folders:
        if name not in labels:
            unknown.append(name)
            continue
        files = list(iter_image_files(os.path.join(folder, name)))
        if not files:
            empty.append(name)
        entries.extend((name + "/" + f, labels[name]) for f in files)
    if empty:
        problems.append("%s: %d class folder(s) hold no image files (*.JPEG, *.jpg, *.png, ...): %s"
                        % (folder, len(empty), quote_some(empty)))
    if unknown:
        problems.append("%s: %d class folder(s) are not among the %d classes: %s"
                        % (folder, len(unknown), len(labels), quote_some(unknown)))
    return folders, entries, problems, warnings


def files_missing(root: str, entries: Sequence[Tuple[str, int]]) -> List[str]:
    return [rel for rel, _ in entries if not os.path.isfile(os.path.join(root, rel))]


# ---------------------------------------------------------------- resolve

def _first_existing(*paths):
    for p in paths:
        if p and os.path.isfile(p):
            return p
    return None


def resolve(root: Optional[str] = None, train_dir: Optional[str] = None,
            val_dir: Optional[str] = None, train_list: Optional[str] = None,
            val_list: Optional[str] = None, classes_file: Optional[str] = None,
            words_file: Optional[str] = None,
            allow_missing_val_classes: bool = False) -> Sources:
    """Work out both splits and the classes; raise SourceError listing every problem.

    Defaults from `root`: train_dir = root/train, val_dir = root/val; the val
    labels are val_dir/val_annotations.txt (Tiny ImageNet; names relative to
    val_dir/images), else root/val.txt or val_dir/val.txt unless val_dir is a
    class tree; root/synsets.txt (or Tiny ImageNet's wnids.txt) and
    root/synset_words.txt (or words.txt) are used when present.
    """
    problems: List[str] = []
    if root is not None and not os.path.isdir(root):
        raise SourceError(["data folder not found: %s (expected an ImageNet-style tree: "
                           "train/<wnid>/*.JPEG and val/ with a val.txt)" % root])
    if root is None and not (train_dir and val_dir):
        raise SourceError(["give the data folder ROOT (with train/ and val/), or both --train-dir "
                           "and --val-dir (the folders the --train-list/--val-labels paths are "
                           "relative to)"])
    train_dir = os.path.abspath(train_dir or os.path.join(root, "train"))
    val_dir = os.path.abspath(val_dir or os.path.join(root, "val"))
    if classes_file is None and root is not None:
        classes_file = _first_existing(os.path.join(root, "synsets.txt"),
                                       os.path.join(root, TINY_CLASSES))
    if words_file is None and root is not None:
        words_file = _first_existing(os.path.join(root, "synset_words.txt"),
                                     os.path.join(root, TINY_WORDS))
    tiny = classes_file is not None and os.path.basename(classes_file) == TINY_CLASSES

    classes: Optional[List[str]] = None
    words: Dict[str, str] = {}
    classes_source = ""
    if classes_file:
        try:
            classes, words = read_classes_file(classes_file)
            classes_source = os.path.abspath(classes_file)
        except SourceError as err:
            problems.extend(err.problems)
    if words_file and words_file != classes_file:
        try:
            words.update(read_classes_file(words_file)[1])
        except SourceError as err:
            problems.extend(err.problems)

    # ---- train
    train_warnings: List[str] = []
    train_entries: List[Tuple[str, int]] = []
    if not os.path.isdir(train_dir):
        problems.append("train folder not found: %s (expected train/<wnid>/*.JPEG%s)"
                        % (train_dir, "; --train-list paths are relative to --train-dir"
                           if train_list else ""))
        raise SourceError(problems)
    if train_list:
        train_source = {"kind": "list", "list": os.path.abspath(train_list), "root": train_dir}
        train_entries, list_problems = read_list_file(train_list, classes)
        problems.extend(list_problems)
        if classes is None and train_entries:
            count = max(label for _, label in train_entries) + 1
            classes = ["class_%d" % i for i in range(count)]
            classes_source = "labels 0..%d of %s (no names: give --classes synsets.txt)" % (
                count - 1, train_list)
        missing = files_missing(train_dir, train_entries)
        if missing:
            problems.append("%s: %d listed file(s) missing under %s: %s"
                            % (train_list, len(missing), train_dir, quote_some(missing)))
    else:
        train_source = {"kind": "tree", "root": train_dir}
        folders, train_entries, tree_problems, train_warnings = scan_class_tree(
            train_dir, "train", classes)
        problems.extend(tree_problems)
        if classes is None:
            classes = folders
            classes_source = "sorted class folders of %s" % train_dir
        elif folders and set(folders) != set(classes):
            absent = sorted(set(classes) - set(folders))
            if absent:
                problems.append("%s lists %d classes but the train tree %s has %d class folders; "
                                "%d listed class(es) have no folder: %s"
                                % (classes_source, len(classes), train_dir, len(folders),
                                   len(absent), quote_some(absent)))
    if classes is not None and train_entries:
        out_of_range = sorted({label for _, label in train_entries if label >= len(classes)})
        if out_of_range:
            problems.append("train labels out of range for %d classes: %s"
                            % (len(classes), quote_some(out_of_range)))
        present = {label for _, label in train_entries}
        empty = [classes[i] for i in range(len(classes)) if i not in present]
        if empty and train_list:
            problems.append("%d class(es) have no train image in %s: %s"
                            % (len(empty), train_list, quote_some(empty)))

    # ---- val
    val_warnings: List[str] = []
    val_entries: List[Tuple[str, int]] = []
    if not os.path.isdir(val_dir):
        problems.append("val folder not found: %s (expected val/*.JPEG with a val.txt label file, "
                        "or val/<wnid>/*.JPEG)" % val_dir)
        raise SourceError(problems)
    annotations = os.path.join(val_dir, TINY_VAL_LABELS)
    if val_list is None and os.path.isfile(annotations):
        val_list = annotations
    elif val_list is None and tiny and os.path.isdir(os.path.join(val_dir, "images")):
        # val/images/ would pass for a class tree of one class "images"
        problems.append("no label file for the val images in %s: a Tiny ImageNet tree (%s) "
                        "labels them in %s, which is missing; or give --val-labels"
                        % (os.path.join(val_dir, "images"), classes_file, annotations))
        raise SourceError(problems)
    elif val_list is None and not looks_like_class_tree(val_dir):
        val_list = _first_existing(os.path.join(root, "val.txt") if root else None,
                                   os.path.join(val_dir, "val.txt"))
        if val_list is None:
            tiny_hint = (" (this is a Tiny ImageNet tree, %s found: its val labels are %s)"
                         % (classes_file, annotations)) if tiny else ""
            problems.append("no label file for the val images in %s: expected %s or %s "
                            "(Caffe's data/ilsvrc12/val.txt: 'NAME LABEL' lines) or %s (Tiny "
                            "ImageNet's), or give --val-labels, or a val/<wnid>/ tree%s"
                            % (val_dir, os.path.join(root, "val.txt") if root else "ROOT/val.txt",
                               os.path.join(val_dir, "val.txt"), annotations, tiny_hint))
            raise SourceError(problems)
    if val_list:
        line_format = ("annotations" if os.path.basename(val_list) == TINY_VAL_LABELS
                       else "list")
        if line_format == "annotations" and os.path.isdir(os.path.join(val_dir, "images")):
            val_dir = os.path.join(val_dir, "images")   # its names are relative to val/images
        val_source = {"kind": line_format, "list": os.path.abspath(val_list), "root": val_dir}
        val_entries, list_problems = read_list_file(val_list, classes, line_format)
        problems.extend(list_problems)
        missing = files_missing(val_dir, val_entries)
        if missing:
            problems.append("%s: %d listed file(s) missing under %s: %s"
                            % (val_list, len(missing), val_dir, quote_some(missing)))
        listed = {rel for rel, _ in val_entries}
        unlisted = [rel for rel in iter_image_files(val_dir) if rel not in listed]
        if unlisted:
            val_warnings.append("%d image file(s) under %s are not in %s and are left out: %s"
                                % (len(unlisted), val_dir, val_list, quote_some(unlisted)))
    else:
        val_source = {"kind": "tree", "root": val_dir}
        _, val_entries, tree_problems, val_warnings = scan_class_tree(val_dir, "val", classes)
        # an empty val class folder is not fatal; the coverage check below decides
        problems.extend(p for p in tree_problems if "hold no image files" not in p)
    if classes is not None and val_entries:
        too_big = sorted({label for _, label in val_entries if label >= len(classes)})
        if too_big:
            problems.append("val labels out of range: the train data has %d classes (labels "
                            "0..%d) but %s uses label(s) %s (a label file for another class set?)"
                            % (len(classes), len(classes) - 1, val_source.get("list", val_dir),
                               quote_some(too_big)))
        present = {label for _, label in val_entries}
        uncovered = [classes[i] for i in range(len(classes)) if i not in present]
        if uncovered and not too_big:
            message = ("the val labels use %d distinct classes but the train data has %d; "
                       "%d class(es) have no val image: %s"
                       % (len(present), len(classes), len(uncovered), quote_some(uncovered)))
            if allow_missing_val_classes:
                val_warnings.append(message)
            else:
                problems.append(message + " (pass --allow-missing-val-classes if intended)")
    if problems:
        raise SourceError(problems)
    # words.txt of Tiny ImageNet names all of WordNet's 82,115 synsets: keep the classes'
    words = {name: words[name] for name in classes if name in words}
    return Sources(classes=list(classes), classes_source=classes_source, words=words,
                   train=Split("train", train_dir, train_entries, train_source, train_warnings),
                   val=Split("val", val_dir, val_entries, val_source, val_warnings))
