#!/usr/bin/env python3
"""`make install`: make the built fork usable from anywhere.

* links PREFIX/bin/caffe (and the other Caffe tools) to the build's binaries;
* writes generative_caffe.pth into this Python's site-packages so that
  `import caffe` (the build's pycaffe) and `import gencaffe` (our tools) work.
Re-running replaces the links and the .pth file; --uninstall removes them.
Nothing is copied: rebuilding updates what is installed.
"""
import argparse
import os
import site
import sys
import sysconfig

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = ["caffe", "compute_image_mean", "convert_imageset", "extract_features",
         "upgrade_net_proto_text", "upgrade_net_proto_binary", "upgrade_solver_proto_text"]
PTH_NAME = "generative_caffe.pth"


def site_dir():
    """This interpreter's site-packages if writable, else the user site."""
    purelib = sysconfig.get_paths()["purelib"]
    if os.access(purelib, os.W_OK):
        return purelib
    os.makedirs(site.getusersitepackages(), exist_ok=True)
    return site.getusersitepackages()


def replace_atomically(path, write):
    tmp = path + ".tmp"
    if os.path.lexists(tmp):
        os.remove(tmp)
    write(tmp)
    os.replace(tmp, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", default=os.path.join(REPO, "build", "cpu"),
                        help="CMake build directory (default: build/cpu)")
    parser.add_argument("--prefix", default=os.path.expanduser("~/.local"),
                        help="links go to PREFIX/bin (default: ~/.local)")
    parser.add_argument("--uninstall", action="store_true", help="remove the links and the .pth file")
    args = parser.parse_args()

    build = os.path.abspath(args.build)
    bindir = os.path.join(os.path.abspath(args.prefix), "bin")
    pth = os.path.join(site_dir(), PTH_NAME)
    if args.uninstall:
        for tool in TOOLS:
            link = os.path.join(bindir, tool)
            if os.path.islink(link) and os.readlink(link).startswith(build):
                os.remove(link)
        if os.path.exists(pth):
            os.remove(pth)
        print(f"install_env: removed links in {bindir} and {pth}")
        return 0

    pycaffe = os.path.join(build, "caffe-src", "python")
    if not os.path.exists(os.path.join(pycaffe, "caffe", "_caffe.so")):
        sys.exit(f"install_env: {pycaffe}/caffe/_caffe.so not found: run `make` first.")
    os.makedirs(bindir, exist_ok=True)
    for tool in TOOLS:
        target = os.path.join(build, "caffe", "tools", tool)
        if not os.path.exists(target):
            continue
        link = os.path.join(bindir, tool)
        replace_atomically(link, lambda tmp, t=target: os.symlink(t, tmp))
    replace_atomically(pth, lambda tmp: open(tmp, "w").write(
        f"{pycaffe}\n{os.path.join(REPO, 'python')}\n"))
    print(f"install_env: caffe tools linked in {bindir}")
    print(f"install_env: {pth} makes `import caffe` work in {sys.executable}")
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        print(f"install_env: note: {bindir} is not on your PATH; add it, e.g.\n"
              f"    export PATH=\"{bindir}:$PATH\"")
    return 0


if __name__ == "__main__":
    sys.exit(main())
