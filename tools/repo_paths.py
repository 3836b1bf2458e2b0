"""The tools' one path set-up: `from repo_paths import REPO` as a tool's first
import puts the repository's python/ (the gencaffe library) on sys.path.

Python runs a tool with tools/ as sys.path[0], so every tool finds this
module; the built pycaffe is added by gencaffe.pycaffe_path.add_build_pycaffe
($CAFFE_BUILD_DIR or build/cpu) where a tool needs it.
"""
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBRARY = os.path.join(REPO, "python")
if LIBRARY not in sys.path:
    sys.path.insert(0, LIBRARY)
