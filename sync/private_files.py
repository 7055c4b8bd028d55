"""Files holding personal data (email addresses): created owner-only, looser ones warned about."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Optional, Set, TextIO, cast

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


def _user_name(uid: int) -> str:
    try:
        import pwd  # POSIX only

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return f"uid {uid}"


def foreign_owner(*paths: Path) -> Optional[str]:
    """The user owning the first of `paths` that exists and is not this process's user (POSIX): files a
    run as another user left behind (`sudo` once, root's crontab), which this one cannot open."""
    if not hasattr(os, "geteuid"):
        return None
    me = os.geteuid()
    for path in paths:
        try:
            uid = os.stat(path).st_uid
        except OSError:
            continue
        if uid != me:
            return _user_name(uid)
    return None


def foreign_state_message(state_db: Path, owner: str) -> str:
    """What to do about a state file (and its lock, -wal, -shm) another user's run made."""
    me = _user_name(os.geteuid())
    return (f"the state database {state_db} belongs to {owner}, not to {me}, who runs this (an earlier run as "
            f"{owner}, with sudo?): run the sync as {owner} only, or give its files to {me}: "
            f"sudo chown {me} {state_db}*")
