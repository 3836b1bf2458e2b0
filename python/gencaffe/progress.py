"""Progress bars for the CLIs: tqdm on stderr, redrawn every 30 s when stderr is a
log file instead of a terminal (as python/hmc_visualize.py does)."""
import sys


def bar_factory(enabled: bool = True):
    """A ``(total, description, unit) -> tqdm`` callable, or None when disabled."""
    if not enabled:
        return None
    from tqdm import tqdm
    interactive = sys.stderr.isatty()

    def make(total, description="", unit="img"):
        return tqdm(total=total, desc=description, unit=unit, dynamic_ncols=True,
                    mininterval=0.1 if interactive else 30.0, ascii=not interactive,
                    leave=True)
    return make
