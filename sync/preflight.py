"""`python main.py --check`: verify tokens, scopes, properties, fields, groups and lists, and
show the mapping with sample values, without writing anything anywhere."""

from __future__ import annotations

import os
import textwrap
from functools import partial
from itertools import islice
from typing import Callable, Dict, List, Optional, Sequence, Set, TextIO, Tuple, TypeVar

from .advisories import SCHEMA_SCOPE_MESSAGE
from .associations import Associations
from .casting import PropertyInfo, property_infos
from .consent.by_address import CONSENT_SCOPE_MESSAGE, AddressConsent
from .errors import EXIT_ABORTED, EXIT_CONFIG, EXIT_OK, AuthError, SyncError
from .hubspot import (
    HubSpotReader,
    HubSpotWriter,
    MissingScopes,
    engagement_property_problem,
    missing_status_options,
    status_property_problem,
)
from .hubspot_schema import ENGAGEMENT_PROPERTIES, STATUS_PROPERTY, WRITE_BACK_SCOPES
from .mailerlite import MailerLiteClient
from .mapping import DEFAULT_OPTOUT_PROPERTIES, Mapping, Planned, map_contact, normalise_email
from .progress import cut, terminal_columns
from .suggest import did_you_mean

SAMPLE_CONTACTS = 3
PROBE_ADDRESS = "consent-check@example.invalid"  # asked about when no sample contact has an address
SAMPLE_COLUMN_MIN = 12  # narrower: the table goes two lines a rule rather than hide the samples
SCHEMA_READ_SCOPE = "crm.schemas.contacts.read"
T = TypeVar("T")


def _first_member(reader: HubSpotReader, list_id: str) -> Optional[int]:
    """Reading one member is enough to know the list exists and the scope is granted."""
    return next(iter(reader.list_members(list_id)), None)
HUBSPOT = "HubSpot"
MAILERLITE = "MailerLite"


class Preflight:
    def __init__(self, hubspot: HubSpotWriter, mailerlite: MailerLiteClient, mapping: Mapping, out: TextIO,
                 check_write_back: bool = False, check_engagement: bool = False) -> None:
        self.hubspot = hubspot
        self.mailerlite = mailerlite
        self.mapping = mapping
        self.out = out
        self.problems: List[str] = []
        self.notes: List[str] = []
        self.down: Dict[str, str] = {}  # system -> why it could not be reached: said once, asked no more
        # Systems whose token itself was refused: that is the one thing to say about them (a 401 to
        # every request would otherwise read as missing scopes too), so nothing more is asked.
        self.refused: Set[str] = set()
        self.check_write_back = check_write_back
        self.check_engagement = check_engagement

    def _outage(self, system: str, exc: SyncError) -> bool:
        """An outage is not a configuration problem: one line per system, and no more asking it."""
        if exc.exit_code != EXIT_ABORTED:
            return False
        # The run's wording ("stopped, the next run continues") is about runs, not a check.
        why = str(exc).split("; stopped")[0]
        self.down.setdefault(system or "an API", why[len(system) + 1:] if system and why.startswith(system) else why)
        return True

    def _try(self, what: Callable[[], T], system: str = "") -> Optional[T]:
        if system in self.down or system in self.refused:
            return None
        try:
            return what()
        except AuthError as exc:
            if system and not isinstance(exc, MissingScopes):
                self.refused.add(system)
            if str(exc) not in self.problems:
                self.problems.append(str(exc))
        except SyncError as exc:  # missing scope, unknown list, outage
            if not self._outage(system, exc) and str(exc) not in self.problems:
                self.problems.append(str(exc))
        return None

    def _definitions(self) -> Optional[object]:
        """Property definitions need crm.schemas.contacts.read: only a problem when the mapping
        uses labels; otherwise values simply go as text."""
        try:
            return self.hubspot.property_definitions()
        except AuthError as exc:
            needs_labels = any(r.transform for r in self.mapping.rules) or any(
                "{label}" in g.template for g in self.mapping.property_groups)
            if not isinstance(exc, MissingScopes) and SCHEMA_READ_SCOPE not in str(exc):
                self.refused.add(HUBSPOT)  # the token itself is refused: nothing else about HubSpot is asked
                self.problems.append(str(exc))
            elif needs_labels:
                self.problems.append(f"the HubSpot token lacks the scope {SCHEMA_READ_SCOPE}, which this mapping "
                                     f"needs for labels (transform = \"label\" or {{label}}); add the scope to "
                                     f"the service key or private app")
            elif self.mapping.optout_properties != DEFAULT_OPTOUT_PROPERTIES:
                # A run stops so (exit 2): a mistyped opt-out name could not be told (issue 22, item 6).
                self.problems.append(f"the HubSpot token lacks the scope {SCHEMA_READ_SCOPE}, which this mapping "
                                     f"needs to verify [consent] optout_properties; add the scope to the service "
                                     f"key or private app")
            else:
                self.notes.append(SCHEMA_SCOPE_MESSAGE)  # the same words a run says once
        except SyncError as exc:
            if not self._outage(HUBSPOT, exc):
                self.problems.append(str(exc))
        return None

    def run(self) -> int:
        defs = self._definitions()
        info: Dict[str, PropertyInfo] = {}
        if isinstance(defs, dict):
            info = property_infos(defs)
            for prop in self.mapping.properties():
                if prop in info:
                    continue
                if prop in self.mapping.optout_properties:
                    # A misspelt opt-out property would let opt-outs go unnoticed: always a problem.
                    self.problems.append(f"HubSpot has no opt-out property {prop!r} ([consent] optout_properties; "
                                         f"per-subscription ones are hs_email_optout_<subscription type id>)")
                else:
                    hint = did_you_mean(prop, defs)
                    self.problems.append(f"HubSpot has no contact property {prop!r}" + (f" ({hint})" if hint else ""))
        associated = Associations(self.hubspot, None, self.mapping, dry_run=True)
        if associated.enabled:
            info.update(self._check_associated(associated))
        sample = self._try(lambda: list(islice(self.hubspot.iter_contacts(self.mapping.properties()), SAMPLE_CONTACTS)),
                           HUBSPOT)
        if associated.enabled and isinstance(sample, list) and not self.problems:
            self._try(lambda: associated.enrich(sample), HUBSPOT)  # their companies' and deals' sample values
        associated.close()
        self._check_consent_scope(sample if isinstance(sample, list) else [])
        fields = self._try(self.mailerlite.list_fields, MAILERLITE)
        existing = {str(f.get("key")): str(f.get("type")) for f in fields or [] if isinstance(f, dict)}
        self._check_fields(info, existing, fields is not None)
        self._check_groups()
        for list_id in self.mapping.list_ids():
            self._try(partial(_first_member, self.hubspot, list_id), HUBSPOT)
        if self.check_write_back:
            self._check_write_back(defs if isinstance(defs, dict) else None)
        if self.check_engagement:
            self._check_engagement(defs if isinstance(defs, dict) else None)
        self._print(info, existing, sample if isinstance(sample, list) else [])
        if self.problems:
            return EXIT_CONFIG
        return EXIT_ABORTED if self.down else EXIT_OK  # 3: try again later; 2 is for settings

    def _check_associated(self, associated: Associations) -> Dict[str, PropertyInfo]:
        """Company and deal names (company.x, deal.x, deals.*): their read scopes, and their names
        and types from the company and deal schemas (whose scopes are recommended)."""
        problems = self._try(associated.check_scopes, HUBSPOT)
        self.problems.extend(problems or [])
        if problems:
            return {}
        found = self._try(associated.infos, HUBSPOT)
        if associated.unverified:
            self.notes.append(associated.schema_advice())
        return found or {}

    def _check_consent_scope(self, sample: List[dict]) -> None:
        """Consent by address needs its own scope; without it the sync falls back to the records'
        opt-outs, and this says (here, not every hour) what it then cannot follow."""
        if HUBSPOT in self.refused or HUBSPOT in self.down:
            return
        emails = [e for e in (normalise_email(c["properties"].get("email")) for c in sample) if e]
        reader = AddressConsent(self.hubspot, self.mapping.optout_properties)
        self._try(lambda: reader.opted_out((emails or [PROBE_ADDRESS])[:1]), HUBSPOT)
        if reader.available is False:
            self.notes.append(CONSENT_SCOPE_MESSAGE)

    def _check_write_back(self, defs: Optional[Dict[str, dict]]) -> None:
        missing = self._try(self.hubspot.missing_write_scopes, HUBSPOT)
        for scope in missing if isinstance(missing, list) else []:
            self.problems.append(f"write-back is on, but the HubSpot token lacks the scope {scope}")
        if self.hubspot.write_scopes_known is False:
            self.notes.append(f"HubSpot does not say which scopes this token has (a service key?); if it lacks "
                              f"{' or '.join(WRITE_BACK_SCOPES)}, the first write-back stops with exit 2")
        existing = (defs or {}).get(STATUS_PROPERTY)
        if not isinstance(existing, dict):
            return
        problem = status_property_problem(existing)
        missing = [] if problem else missing_status_options(existing)
        if problem:
            self.problems.append(problem)
        elif missing:
            self.notes.append(f"HubSpot property {STATUS_PROPERTY} lacks the options {', '.join(missing)}; "
                              f"write-back adds them (or add them in HubSpot's property settings)")

    def _check_engagement(self, defs: Optional[Dict[str, dict]]) -> None:
        missing = self._try(self.hubspot.missing_write_scopes, HUBSPOT)
        for scope in missing if isinstance(missing, list) else []:
            self.problems.append(f"engagement is on, but the HubSpot token lacks the scope {scope}")
        if self.hubspot.write_scopes_known is False and not self.check_write_back:  # said once with write-back
            self.notes.append(f"HubSpot does not say which scopes this token has (a service key?); if it lacks "
                              f"{' or '.join(WRITE_BACK_SCOPES)}, the first engagement write stops with exit 2")
        if defs is None:
            return
        for prop in ENGAGEMENT_PROPERTIES:
            existing = defs.get(prop["name"])
            problem = engagement_property_problem(existing) if isinstance(existing, dict) else None
            if problem:
                self.problems.append(problem)
        absent = [str(p["name"]) for p in ENGAGEMENT_PROPERTIES if p["name"] not in defs]
        if absent:
            # Named in docs/engagement.md: five names would make a 200-column line.
            what = f"the HubSpot property {absent[0]}" if len(absent) == 1 else f"{len(absent)} HubSpot properties"
            self.notes.append(f"engagement creates {what} (group MailerLite)")

    def _check_fields(self, info: Dict[str, PropertyInfo], existing: Dict[str, str], reachable: bool) -> None:
        if not reachable:
            return
        for rule in self.mapping.rules:
            planned = self.mapping.field_type(rule, info, existing)
            if rule.field not in existing:
                if self.mapping.create_missing_fields:
                    self.notes.append(f"MailerLite field {rule.field} ({planned}) will be created")
                else:
                    hint = did_you_mean(rule.field, existing)
                    self.problems.append(f"MailerLite has no field {rule.field!r} ({hint + ' ' if hint else ''}set "
                                         f"create_missing_fields = true or create it)")
            elif rule.type and existing[rule.field] != rule.type:
                self.problems.append(f"MailerLite field {rule.field} is {existing[rule.field]}, the mapping says "
                                     f"{rule.type}")

    def _check_groups(self) -> None:
        static = list(self.mapping.static_groups) + [name for _, name in self.mapping.list_groups]
        if not static and not self.mapping.property_groups:
            return
        groups = self._try(self.mailerlite.list_groups, MAILERLITE)
        names = {str(g.get("name")) for g in groups or [] if isinstance(g, dict)}
        for name in static:
            if groups is not None and name not in names:
                self.notes.append(f"MailerLite group {name!r} will be created")

    def _print(self, info: Dict[str, PropertyInfo], existing: Dict[str, str], sample: List[dict]) -> None:
        if self.refused:  # a refused token is the one thing to say: the mapping would show only "?" and "-"
            self._print_problems(partial(_say, self.out, terminal_columns(self.out) - 1))
            return
        mapped = [map_contact(c, self.mapping, info, frozenset(), existing) for c in sample]
        rows = [("HubSpot property", "HubSpot type", "MailerLite field", "type", "sample values")]
        for rule in self.mapping.rules:
            values = [str(m.fields.get(rule.field, "")) for m in mapped if isinstance(m, Planned)]
            rows.append((rule.prop, info.get(rule.prop, PropertyInfo("?")).type, rule.field,
                         self.mapping.field_type(rule, info, existing), ", ".join(v[:20] for v in values if v) or "-"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        width = terminal_columns(self.out) - 1  # 79 in cron mail and pipes
        # The sample values get what the other columns leave of the line.
        widths[-1] = width - 2 - sum(w + 2 for w in widths[:-1])
        if widths[-1] < SAMPLE_COLUMN_MIN:
            _print_stacked(self.out, rows[1:], width)  # HubSpot's long names: a row would not fit
        else:
            print("Mapping:", file=self.out)
            for row in rows:
                cells = [*row[:-1], cut(row[-1], widths[-1])]
                print("  " + "  ".join(cell.ljust(w) for cell, w in zip(cells, widths)).rstrip(), file=self.out)
        groups = list(self.mapping.static_groups) + [f"{g} (list {lid})" for lid, g in self.mapping.list_groups]
        groups += [f"{r.template} (from {r.prop})" for r in self.mapping.property_groups]
        say = partial(_say, self.out, width)
        say("Groups: " + (", ".join(groups) if groups else "none"))
        if self.mapping.scope_lists or self.mapping.scope_where:
            scope = [f"lists {', '.join(self.mapping.scope_lists)}"] if self.mapping.scope_lists else []
            scope += [f"{p} in {sorted(v)}" for p, v in self.mapping.scope_where]
            say("Scope: " + "; ".join(scope))
        for note in self.notes:
            say(f"note: {note}")
        for system, why in self.down.items():
            say(f"{system} could not be reached: {why}. Check the network and try again; what needs {system} was "
                f"not checked.")
        self._print_problems(say)

    def _print_problems(self, say: Callable[..., None]) -> None:
        if self.problems:
            say(f"{len(self.problems)} problem(s):")
            for problem in self.problems:
                say(f"  - {problem}", indent="    ")
        elif not self.down:
            say("All checks passed.")


def _print_stacked(out: TextIO, rows: Sequence[Tuple[str, ...]], width: int) -> None:
    """The mapping as two lines a rule, for names too long for one row within `width` columns
    (HubSpot's own properties run to 40-50 characters): the names and types, then the samples."""
    print("Mapping: HubSpot property (type) -> MailerLite field (type), sample values:", file=out)
    for prop, prop_type, field, field_type, samples in rows:
        source, target = f"{prop} ({prop_type})", f"-> {field} ({field_type})"
        if len(source) + len(target) + 3 <= width:
            print(f"  {source} {target}", file=out)
        else:
            print(f"  {source}\n    {target}", file=out)
        print("      " + cut(samples, width - 6), file=out)


def _say(out: TextIO, width: int, text: str, indent: str = "  ") -> None:
    """A line of --check, wrapped on a terminal; in a pipe or a file each one stays one line, for grep."""
    if not _is_terminal(out):
        print(text, file=out)
        return
    print(textwrap.fill(text, width, subsequent_indent=indent, break_on_hyphens=False, break_long_words=False),
          file=out)


def _is_terminal(out: TextIO) -> bool:
    try:
        return os.isatty(out.fileno())
    except (AttributeError, OSError, ValueError):
        return False
