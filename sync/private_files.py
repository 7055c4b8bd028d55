"""Files holding personal data (email addresses): created owner-only, looser ones warned about."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Set, TextIO, cast

log = logging.getLogger(__name__)

PRIVATE_MODE = 0o600
_warned: Set[str] = set()


def create_private(path: Path) -> None:
    """Create `path` empty with mode 0600 unless it exists (then its mode is checked instead)."""
    try:
        fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    except FileExistsError:
        warn_if_shared(path)
        return
    os.close(fd)


def open_private(path: Path, mode: str = "w", encoding: str = "utf-8", newline: str = "") -> TextIO:
    """open() for text that holds personal data: a new file is 0600 from its first byte."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    existed = path.exists()
    fd = os.open(str(path), flags, PRIVATE_MODE)
    if existed:
        warn_if_shared(path)
    return cast(TextIO, os.fdopen(fd, mode, encoding=encoding, newline=newline))


def warn_if_shared(path: Path) -> None:
    """Once per file and process: a regular file others may read holds addresses in the open."""
    if os.name != "posix" or str(path) in _warned:
        return
    try:
        st = os.stat(path)
    except OSError:
        return
    if stat.S_ISREG(st.st_mode) and st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        _warned.add(str(path))
        log.warning("%s holds email addresses and other users can read it; protect it: chmod 600 %s", path, path)
