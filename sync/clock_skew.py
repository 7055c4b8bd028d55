"""Times the state holds that lie in the future, set back at the start of a run.

A run whose clock was ahead (a wrong system clock, corrected since) stores "last done" and "next
due" times in the future, and periodic work (the archived check, the consent sweep, write-back,
engagement, a consent action's back-off) would then wait until that future came. Each such time is
clamped, once, to the latest value a run with a right clock could have stored: now for a "last
done" time, now plus its interval for a "next due" one. One warning says so.
"""

from __future__ import annotations

import logging
from typing import List, Mapping

from .state import State

log = logging.getLogger(__name__)


def clamp_future_times(state: State, now_ms: int, horizons: Mapping[str, int], action_wait_max_ms: int) -> List[str]:
    """Clamp the state's meta times (key -> how far past now it may lie), the bookmark (never past
    now) and the consent actions' next tries (never more than their longest back-off away).
    Returns what was clamped, as said in the warning."""
    clamped: List[str] = []
    for key, horizon in sorted(horizons.items()):
        value = state.get_json(key)
        latest = now_ms + horizon
        if isinstance(value, int) and not isinstance(value, bool) and value > latest:
            state.set_json(key, latest)
            clamped.append(key)
    bookmark = state.bookmark()
    if bookmark is not None and bookmark > now_ms:
        state.set_bookmark(now_ms)
        clamped.append("bookmark")
    actions = state.clamp_action_tries(now_ms + action_wait_max_ms)
    if actions:
        clamped.append(f"the back-off of {actions} consent action(s)")
    if clamped:
        log.warning("the state held times in the future (an earlier run's clock was ahead): %s set back to now",
                    ", ".join(clamped))
    return clamped
