"""Write output files atomically: to a temporary name in the same folder, then rename,
so an interrupted run never leaves a half-written PNG/CSV/NPY under the final name."""
import contextlib
import os
import tempfile


@contextlib.contextmanager
def atomic_write(path: str, mode: str = "wb"):
    """``with atomic_write(p, 'w') as fh: ...`` -- ``p`` appears only if the block succeeds."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"newline": ""})) as fh:
            yield fh
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
