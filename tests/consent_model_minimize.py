"""Shorten a failing sequence of the model-based consent test further than hypothesis did.

Hypothesis stops shrinking after a time limit, and each step here runs the real program, so a
sequence it prints can still hold steps the failure does not need. Paste it into a file and run

    python -m tests.consent_model_minimize FILE "I1: ann@example.com opted out"

It replays the sequence (the `state.rule(...)` lines) against ConsentModel, then drops steps one at a
time, keeping each removal after which the replay still fails with a message holding the text given,
and prints the shorter sequence.
"""

from __future__ import annotations

import ast
import io
import sys
from typing import Any, List, Optional, Tuple

from tests.consent_model import Servers, servers
from tests.test_consent_model import ConsentModel

Step = Tuple[str, dict]


class _Capture:
    """What the World asks of pytest's capsys: the output since the last call."""

    def __init__(self) -> None:
        self.out, self.err = io.StringIO(), io.StringIO()

    def readouterr(self) -> Tuple[str, str]:
        out, err = self.out.getvalue(), self.err.getvalue()
        self.out.seek(0), self.out.truncate(0), self.err.seek(0), self.err.truncate(0)
        return out, err


def parse(text: str) -> List[Step]:
    steps = []
    for line in text.splitlines():
        line = line.strip().lstrip("|").strip()
        if not line.startswith("state.") or line.startswith("state.teardown"):
            continue
        call = ast.parse(line[len("state."):], mode="eval").body
        assert isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
        steps.append((call.func.id, {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg}))
    return steps


def failure(both: Servers, capture: Any, steps: List[Step]) -> Optional[str]:
    """The replay's failure message, or None if every invariant held."""
    ConsentModel.servers, ConsentModel.capsys = both, capture
    machine = ConsentModel()
    try:
        for name, kwargs in steps:
            try:
                getattr(machine, name)(**kwargs)
            except (IndexError, ZeroDivisionError, KeyError, ValueError):
                continue  # a step whose precondition no longer holds after a removal: skipped
        return None
    except AssertionError as exc:
        return str(exc)
    finally:
        machine.teardown()


def minimize(steps: List[Step], wanted: str) -> List[Step]:
    real_out, real_err = sys.stdout, sys.stderr
    capture = _Capture()
    with servers() as both:
        sys.stdout, sys.stderr = capture.out, capture.err
        try:
            first = failure(both, capture, steps)
            assert first and wanted in first, f"the sequence does not fail with {wanted!r}: {first}"
            i = 1  # never drop configure
            while i < len(steps):
                shorter = steps[:i] + steps[i + 1:]
                message = failure(both, capture, shorter)
                if message and wanted in message:
                    steps = shorter
                else:
                    i += 1
        finally:
            sys.stdout, sys.stderr = real_out, real_err
    return steps


def main(argv: List[str]) -> None:
    path, wanted = argv
    with open(path, encoding="utf-8") as handle:
        steps = minimize(parse(handle.read()), wanted)
    for name, kwargs in steps:
        print(f"state.{name}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})")


if __name__ == "__main__":
    main(sys.argv[1:])
