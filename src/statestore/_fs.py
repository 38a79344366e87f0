"""Small file-system helpers shared by the backends."""

from __future__ import annotations

import os
from pathlib import Path


def make_private_dirs(path: Path) -> None:
    """Create ``path`` and any missing parents with mode 0700 (owner only).

    ``Path.mkdir(mode=..., parents=True)`` applies the mode to the last folder
    only; state can hold tokens, so every folder we create is private.
    Existing folders are left as they are.
    """
    missing = []
    while not path.exists():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            continue  # another process created it first
        os.chmod(folder, 0o700)  # mkdir's mode is filtered by the umask
