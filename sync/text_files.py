"""The text of a file a person edits by hand (`.env`, the mapping file), as Windows editors save it.

Notepad writes UTF-8 with a byte order mark, "ANSI" (cp1252) or "Unicode" (UTF-16): the first is
read as UTF-8, the others are one line naming the file, where, and what to do; never a decoder's
class name, which reads like a permissions problem.
"""

from __future__ import annotations

import codecs

from .errors import ConfigError

UTF8_BOM = codecs.BOM_UTF8
UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
SAVE_AS_UTF8 = "save it as UTF-8 (Notepad: File > Save as > Encoding: UTF-8)"


def hand_written_text(data: bytes, what: str) -> str:
    """`data` as text, a leading UTF-8 byte order mark dropped; ConfigError names `what` (the file, as
    the message should call it) and the first line that is not UTF-8."""
    if data.startswith(UTF16_BOMS):
        raise ConfigError(f"{what} is not UTF-8 text (it is saved as UTF-16); {SAVE_AS_UTF8}")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{what} is not UTF-8 text (line {line}); {SAVE_AS_UTF8}") from None
