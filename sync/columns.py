"""Text a person reads, within 80 columns: wrapped between words only, never inside a command or a
path, and a command that cannot fit goes on a line of its own (cron mail and terminals alike)."""

from __future__ import annotations

import re
import textwrap

COLUMNS = 80  # what cron mail and a default terminal show
INDENT = "  "
PERSON = "person"  # a log record's attribute: its text as stderr shows it, when it differs from the log file's
KEEP = "\u00a0"  # textwrap breaks at ASCII whitespace only: a command's blanks become this while wrapping
# `python main.py --sandbox --reset`, `.../python .../main.py --env-file X --rejected`: one piece.
_COMMAND_RE = re.compile(r"(?:\S*python\S*\s+)?\S*main\.py(?:\s+--?[a-z][-a-z]*(?:\s+(?!-)[^\s,;:()]+)?)*")


def unbreakable(text: str) -> str:
    """`text` with the blanks inside each command made unbreakable (see `wrap`)."""
    return _COMMAND_RE.sub(lambda m: m.group(0).replace(" ", KEEP), text)


def wrap(text: str, width: int = COLUMNS, first: int = 0, indent: str = INDENT) -> str:
    """`text` as lines of at most `width` columns (the first `first` columns shorter: a prefix such
    as "WARNING: " comes before it), broken between words, never inside a command or a word."""
    wrapper = textwrap.TextWrapper(width=width, initial_indent=KEEP * first, subsequent_indent=indent,
                                   break_long_words=False, break_on_hyphens=False)
    lines = wrapper.wrap(unbreakable(text)) or [""]
    lines[0] = lines[0][first:]
    return "\n".join(lines).replace(KEEP, " ")
