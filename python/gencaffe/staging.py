"""Output folders written by the data tools (ImageNet LMDBs, semi-supervised
splits, the stand-in): their manifest, read back, and the move of finished
outputs from a staging folder into place, the manifest last, so that a run
stopped half-way is never taken for a finished one."""
import json
import os
from typing import Optional, Sequence

from .atomic_io import atomic_write


def read_manifest(out_dir: str, name: str, tool_id: str) -> Optional[dict]:
    """The manifest `name` in out_dir if it is a JSON object written by
    `tool_id` (its "tool" field), else None (missing, unreadable, another tool's)."""
    try:
        with open(os.path.join(out_dir, name)) as handle:
            manifest = json.load(handle)
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("tool") == tool_id else None


def write_manifest(path: str, manifest: dict) -> None:
    with atomic_write(path, "w") as handle:
        json.dump(manifest, handle, indent=2, sort_keys=True)
        handle.write("\n")


def promote(staging: str, out_dir: str, outputs: Sequence[str], manifest_name: str,
            manifest: dict, placeholder: dict) -> None:
    """Move `outputs` (names) from staging into out_dir. The manifest is first
    replaced by `placeholder` (the tool's, saying the folder is being
    replaced and is not current), the old outputs are moved aside into
    staging (removed with it), and the new manifest comes last."""
    manifest_path = os.path.join(out_dir, manifest_name)
    with atomic_write(manifest_path, "w") as handle:
        json.dump(placeholder, handle)
    attic = os.path.join(staging, ".replaced")
    os.makedirs(attic)
    for name in outputs:
        final = os.path.join(out_dir, name)
        if os.path.lexists(final):
            os.rename(final, os.path.join(attic, name))
        if os.path.lexists(os.path.join(staging, name)):
            os.rename(os.path.join(staging, name), final)
    write_manifest(manifest_path, manifest)
