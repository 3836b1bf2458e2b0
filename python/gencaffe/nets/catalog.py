"""The architectures we generate, by key, and where their committed variants live."""
import os

from . import alexnet, coupled, coupled_cnn, coupled_dense, lenet, zf
from .variants import VARIANTS, NetOptions, prototxt

ARCHITECTURES = {arch.key: arch for arch in (lenet.ARCH, alexnet.ARCH, zf.ARCH,
                                              alexnet.TINY, zf.TINY)}
# Flach et al.'s coupled forward/reverse nets (coupled.py): their own variants
COUPLED_ARCHITECTURES = {arch.key: arch for arch in (coupled_dense.ARCH, coupled_cnn.ARCH)}


def architecture(key):
    try:
        return ARCHITECTURES[key]
    except KeyError:
        raise ValueError("unknown architecture %r (one of %s)"
                         % (key, ", ".join(ARCHITECTURES))) from None


def committed_path(repo, arch, variant):
    return os.path.join(repo, "models", arch.key, arch.files[variant])


def committed_nets(repo):
    """{path: text} of every committed net, as the generator writes it."""
    nets = {committed_path(repo, arch, variant): prototxt(arch, variant)
            for arch in ARCHITECTURES.values() for variant in VARIANTS}
    nets.update(coupled.committed_nets(repo, COUPLED_ARCHITECTURES.values()))
    return nets


def stale_nets(repo):
    """Committed nets whose file differs from the generator's output (or is missing)."""
    stale = []
    for path, text in committed_nets(repo).items():
        try:
            with open(path) as handle:
                if handle.read() == text:
                    continue
        except FileNotFoundError:
            pass
        stale.append(path)
    return stale


__all__ = ["ARCHITECTURES", "COUPLED_ARCHITECTURES", "architecture", "committed_nets",
           "committed_path", "stale_nets", "NetOptions"]
