"""docs/troubleshooting.md lists every message the program prints."""

from __future__ import annotations

import ast
import re

from tests.test_cli_subprocess import MAIN

SOURCES = [MAIN] + sorted(p for p in (MAIN.parent / "sync").rglob("*.py") if "fakes" not in p.parts)


TROUBLESHOOTING = MAIN.parent / "docs" / "troubleshooting.md"


# Lines that only carry another message (the summary line, an exception's own text, a warning said
# once): what they carry is collected where it is made.
CARRIERS = {"{}{}", "{}; done so far: {}", "{} {}", "contact {}: {}", "{}: {}", "{}, got {}"}


def _error_classes(trees):
    names = {"SyncError", "KeyboardInterrupt"}
    grew = True
    while grew:
        grew = False
        for tree in trees:
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef) and node.name not in names and any(
                        getattr(base, "id", getattr(base, "attr", None)) in names for base in node.bases):
                    names.add(node.name)
                    grew = True
    return names


def _text(node):
    """A message's text with its placeholders as {} (f-strings, % and str.format alike)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return re.sub(r"%[-+ #0-9.]*[sdrif]", "{}", node.value)
    if isinstance(node, ast.JoinedStr):
        return "".join(_text(v) if isinstance(v, ast.Constant) else "{}" for v in node.values)
    if isinstance(node, ast.BinOp):
        return (_text(node.left) or "") + "{}"
    return None


def program_messages():
    """(where, text) of every message the program can print: errors it raises, lines it logs at
    WARNING or ERROR, argument errors and main.py's own exits. Collected from the source."""
    trees = {path: ast.parse(path.read_text()) for path in SOURCES}
    raised = _error_classes(trees.values())
    found = []
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if path == MAIN and isinstance(node, ast.Return) and node.value is not None:  # the version check's line
                text = _text(node.value)
                if text:
                    found.append((f"{path.name}:{node.lineno}", text))
            if not isinstance(node, ast.Call) or not node.args:
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", None))
            if name in raised or name in ("error", "warning", "exit"):
                text = _text(node.args[0])
                if text == "{}" and len(node.args) > 1:
                    text = _text(node.args[1])
                if text and text not in CARRIERS and text != "{}":
                    found.append((f"{path.name}:{node.lineno}", text))
    return found


def stable_words(text):
    """The first words that do not change from one occurrence to the next (up to four)."""
    for chunk in text.split("{}"):
        words = re.sub(r"[`'\"]", "", chunk).strip(" ,;:.()").split()
        if len(words) >= 2:
            return " ".join(words[:4]).strip(" ,;:.()").lower()
    return None


def test_every_message_the_program_prints_is_in_troubleshooting():
    doc = " ".join(re.sub(r"[`'\"]", "", TROUBLESHOOTING.read_text(encoding="utf-8")).lower().split())
    messages = program_messages()
    assert len(messages) > 60  # the collector finds them (it would pass vacuously otherwise)
    missing = [(where, text) for where, text in messages if stable_words(text) and stable_words(text) not in doc]
    assert missing == [], "\n".join(f"{where}: {text}" for where, text in missing)
