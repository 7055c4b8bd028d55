"""A TOML syntax error in the mapping file, said as what to fix on which line, not in the parser's
own words ("Illegal character '\\n' (at line 54, column 22)" means a string whose closing quote is
missing). The parser (tomllib, or tomli before Python 3.11) names the place in its message."""

from __future__ import annotations

import re
from typing import Optional, Tuple

_PLACE_RE = re.compile(r"\(at line (\d+), column (\d+)\)|\(at end of document\)")
# The parser's words -> what a person does about them, first match wins.
_FIXES: Tuple[Tuple[str, str], ...] = (
    (r"^Illegal character '\\n'|^Unterminated string|^Expected \"'\"|^Expected '\"'",
     'a text value is not closed: end it with the same quote it starts with ("like this")'),
    (r"^Expected '=' after a key",
     'write name = value; a name with blanks or other characters goes in quotes ("first name" = "x")'),
    (r"^Invalid value",
     'a value is text in quotes ("job_title"), a number, true or false, or a list in [ ]'),
    (r"^Cannot overwrite a value|^Cannot declare",
     "a name or a [section] is there twice: keep one"),
    (r"^Expected '\]' at the end of a table",
     "a [section] line needs its closing ]"),
    (r"^Unclosed array",
     "a list needs its closing ]"),
    (r"^Unclosed inline table",
     "a { } value needs its closing } on the same line"),
    (r"^Expected newline or end of document",
     "one setting per line: anything after a value starts a new line (a comment starts with #)"),
)
_DEFAULT_FIX = "check the quotes, brackets and = there"


def place(parser_message: str) -> Optional[int]:
    """The line the parser names (None: the end of the file)."""
    match = _PLACE_RE.search(parser_message)
    return int(match.group(1)) if match and match.group(1) else None


def explain(path: object, parser_message: str, text: str) -> str:
    """One line: the file, the line (its text, cut), and what to fix."""
    first = parser_message.splitlines()[0] if parser_message else ""
    fix = next((advice for pattern, advice in _FIXES if re.search(pattern, first)), _DEFAULT_FIX)
    number = place(first)
    lines = text.splitlines()
    if number is None:
        # A string or list left open runs to the end: the line that opens it is the one to look at.
        number = _last_opening(lines)
        where = f"at line {number}" if number else "at its end"
    else:
        where = f"at line {number}"
    shown = lines[number - 1].strip() if number and 0 < number <= len(lines) else ""
    quoted = f" ({shown[:40]}{'...' if len(shown) > 40 else ''})" if shown else ""
    return f"mapping file {path} is not valid TOML {where}{quoted}: {fix}"


def _last_opening(lines: list) -> Optional[int]:
    """The last line with an odd number of quotes or an unclosed [ or {: where the open value starts."""
    for index in range(len(lines) - 1, -1, -1):
        line = lines[index].split("#", 1)[0]
        if line.count('"') % 2 or line.count("'") % 2 or line.count("[") > line.count("]") \
                or line.count("{") > line.count("}"):
            return index + 1
    return None
