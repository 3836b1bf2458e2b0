"""OpenBLAS's kernels on CPUs newer than the OpenBLAS that Caffe links.

Debian 12's OpenBLAS (0.3.21, built for every x86 core and choosing one at
load) does not know the newest Xeons: on one with AVX-512 FP16 (2026-12-05,
this project's CPU machine) it reports "Core: Prescott" and runs its SSE3
kernels. AlexNet at 56 px then trains 2.3x slower than with its SkylakeX
kernels (`caffe time`, docs/tiny_imagenet.md). OpenBLAS reads
OPENBLAS_CORETYPE when it loads, so the fix is a variable in the
environment of every process that loads it: the runners set it for their
caffe processes (and their own pycaffe) when OpenBLAS fell back on a CPU
that has what a better kernel needs, and leave it alone when the user set it.
"""
import os
import subprocess
from typing import Dict, Iterable, Optional

# the instruction sets OpenBLAS's kernels need, best first
KERNELS = (("SkylakeX", ("avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl")),
           ("Haswell", ("avx2", "fma")))
FALLBACKS = ("Prescott", "Core2", "Katmai", "Unknown")   # what OpenBLAS picks for a CPU it does not know


def cpu_flags(path: str = "/proc/cpuinfo") -> set:
    """The first CPU's feature flags (empty where /proc/cpuinfo is not)."""
    try:
        with open(path) as handle:
            for line in handle:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def better_core(chosen: Optional[str], flags: Iterable[str]) -> Optional[str]:
    """The kernel to ask for when OpenBLAS chose a fallback (`chosen`) on a CPU
    with `flags`; None when its choice stands."""
    if chosen not in FALLBACKS:
        return None
    flags = set(flags)
    for core, needs in KERNELS:
        if flags.issuperset(needs):
            return core
    return None


def chosen_core(binary: str, environ: Optional[Dict[str, str]] = None) -> Optional[str]:
    """The core OpenBLAS picks in `binary` (a program linked to it that runs
    with --version, e.g. caffe): its "Core: X" line under OPENBLAS_VERBOSE=2."""
    env = dict(os.environ if environ is None else environ, OPENBLAS_VERBOSE="2")
    try:
        out = subprocess.run([binary, "--version"], env=env, capture_output=True, text=True,
                             timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    for line in (out.stdout + out.stderr).splitlines():
        if line.startswith("Core: "):
            return line[len("Core: "):].strip()
    return None


def choose(binary: str, environ=os.environ, flags: Optional[Iterable[str]] = None
           ) -> Optional[str]:
    """Sets OPENBLAS_CORETYPE in `environ` (the process's own by default, which
    its children inherit) when OpenBLAS in `binary` fell back on a CPU that
    can run a better kernel; returns what it set, None when it set nothing
    (the user's own OPENBLAS_CORETYPE is never changed)."""
    global set_here
    if environ.get("OPENBLAS_CORETYPE"):
        return None
    core = better_core(chosen_core(binary, environ), cpu_flags() if flags is None else flags)
    if core:
        environ["OPENBLAS_CORETYPE"] = core
        if environ is os.environ:
            set_here = core
    return core


# what choose() set in this process's own environment, if anything
set_here: Optional[str] = None


__all__ = ["cpu_flags", "better_core", "chosen_core", "choose", "KERNELS", "set_here"]
