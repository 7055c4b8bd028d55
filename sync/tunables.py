"""How long the sync waits and how often it tries: every tunable number, in one place, with no logic.

Production uses `Tunables()` (the defaults below). Whoever builds the clients and the engine
(`cli.clients` / `cli.run_sync`) passes one `Tunables` down as a constructor argument; nothing
reads these numbers from a module global, so a test hands in a faster object instead of patching.

What the APIs themselves document (paths, page sizes, batch limits) is not tunable and stays
with the API modules (`hubspot_schema.py`, `mailerlite.py`). The user's settings (.env) are
`config.py`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from . import hubspot_schema


@dataclass(frozen=True)
class Tunables:
    # -- retrying.RetryPolicy: one request's retries ---------------------------------------------
    backoff_s: float = 0.5  # the first retry waits up to this (full jitter), doubling up to max_backoff_s
    max_backoff_s: float = 30.0
    default_rate_wait_s: float = 1.0  # after a 429 that names no Retry-After
    max_failures: int = 6  # 5xx / network errors for one request before giving up
    max_rate_limit_waits: int = 60  # 429s for one request before giving up (a storm, not pacing)
    max_request_s: float = 900.0  # all tries of one request, waits included: past this it is an outage
    max_one_wait_s: float = 900.0  # a Retry-After beyond 15 minutes stops the run (the next one continues)

    # -- hubspot.HubSpotReader: pacing ---------------------------------------------------------------
    # Search allows 5 requests a second per account and sends no headers to pace by.
    search_interval_s: float = hubspot_schema.SEARCH_INTERVAL_S

    # -- writer.SubscriberWriter: MailerLite upserts -----------------------------------------------------
    min_batch: int = 3  # a remainder smaller than this goes as single upserts, sparing the import budget
    max_item_attempts: int = 3  # an item answered "try again" this often in one run is reported failed
    max_refused_runs: int = 3  # a contact refused (not for its data) in this many runs is reported rejected
    # Single upserts (writer) or consent actions (departures) failing in a row beyond retries: MailerLite
    # is down, the run stops.
    max_consecutive_failures: int = 3
    # A consent action (unsubscribe, group removal) that keeps failing: tried the next run, then after
    # an hour, doubling up to a day (departures.next_try_ms).
    consent_retry_first_ms: int = 3_600_000
    consent_retry_max_ms: int = 24 * 3_600_000
    import_wait_first_s: float = 10.0  # when the import 429 names no Retry-After: probe again after this...
    import_wait_max_s: float = 60.0  # ...doubling up to the documented window

    # -- engine.Engine -------------------------------------------------------------------------------------
    # Search can lag writes by more than a minute: the bookmark never passes the run's start minus
    # this margin, so each run reads the last ten minutes again (unchanged contacts cost no write).
    search_lag_ms: int = 10 * 60_000
    archived_check_ms: int = 24 * 3_600_000  # incremental runs look for archived contacts this often
    state_page: int = 100  # contacts looked up in the state per query
    # MailerLite's subscriber listing (adoption) reads for at most this share of the run's time
    # (SYNC_MAX_RUNTIME) and leaves the rest to the pass; the next run continues it (adoption_listing.py).
    listing_share: float = 0.6
    list_reads: int = 3  # a list listing shorter than its size is read this often before the run stops
    wall_clock: Callable[[], float] = time.time  # epoch seconds: the run's start, which bounds the bookmark

    # -- http_limits: every answer of either API --------------------------------------------------------
    max_body_bytes: int = 50_000_000  # far above any page either API sends (a 100-contact page is ~100 KB)

    # -- cli: the --log-file / SYNC_LOG_FILE rotation --------------------------------------------------------
    log_file_bytes: int = 1_000_000
    log_file_backups: int = 3

    # -- state: the SQLite file ------------------------------------------------------------------------
    state_busy_timeout_s: float = 10.0  # how long a run waits for another program's lock on the file


DEFAULTS = Tunables()  # production's
