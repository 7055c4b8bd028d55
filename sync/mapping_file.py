"""Reading the optional mapping file (TOML) into a Mapping, with one-line errors.

The fixed part of the format (users' files must keep working):

    create_missing_fields = true
    [fields]
    jobtitle = "job_title"
    num_employees = { field = "employees", type = "number" }
    lifecyclestage = { field = "lifecycle_stage", transform = "label" }

Everything else is documented in mapping.example.toml.
"""

from __future__ import annotations

import os
import re
import stat
import sys
from pathlib import Path
from typing import Any, Dict, FrozenSet, List, Optional, Sequence, Tuple

from . import toml_errors
from .associated_values import name_problem
from .errors import ConfigError
from .mapping import (
    DEFAULT_FIELD_MAP,
    DEFAULT_OPTOUT_PROPERTIES,
    FIELD_TYPES,
    GROUP_NAME_MAX,
    ON_LEAVE,
    TRANSFORMS,
    FieldRule,
    Mapping,
    PropertyGroupRule,
)
from .suggest import did_you_mean
from .text_files import hand_written_text

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.9/3.10
    import tomli as tomllib

TOP_LEVEL = {"create_missing_fields", "on_leave", "mass_leave_percent", "mass_leave_min", "write_back", "fields",
             "groups", "scope", "consent", "engagement"}
FIELD_KEYS = {"field", "type", "transform", "true_value", "false_value"}
_FIELD_KEY_RE = re.compile(r"^[a-z0-9_]{1,64}$")
_PROPERTY_RE = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


class _Problem(Exception):
    pass


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise _Problem(message)


def _no_unknown(keys: Any, allowed: Any, where: str) -> None:
    unknown = sorted(set(keys) - set(allowed))
    if unknown:
        hint = did_you_mean(unknown[0], allowed)
        raise _Problem(f"{where}unknown setting {unknown[0]!r} ({hint + ' ' if hint else ''}allowed: "
                       f"{', '.join(sorted(allowed))})")


def _string_list(value: Any, where: str) -> Tuple[str, ...]:
    _check(isinstance(value, list) and all(isinstance(v, (str, int)) and str(v).strip() for v in value),
           f"{where} must be a list of names, like [\"a\", \"b\"]")
    return tuple(str(v).strip() for v in value)


def _property(name: str, where: str) -> str:
    _check(bool(_PROPERTY_RE.match(name)), f"{where}: {name!r} is not a HubSpot property name")
    problem = name_problem(name)  # company.x, deal.x and the deals.* aggregates (associated_values.py)
    _check(problem is None, f"{where}: {problem}")
    return name


def _field_rule(prop: str, value: Any) -> Optional[FieldRule]:
    where = f"[fields] {prop}"
    _property(prop, "[fields]")
    if value is False:
        return None  # drops a default mapping
    if isinstance(value, str):
        value = {"field": value}
    _check(isinstance(value, dict), f"{where}: give a field key (\"job_title\"), a table {{ field = ... }} or false")
    _no_unknown(value, FIELD_KEYS, f"{where}: ")
    key = value.get("field")
    _check(key is not None, f"{where}: the table needs field = \"...\" (the MailerLite field key, like "
                            f"\"job_title\")")
    _check(isinstance(key, str) and bool(_FIELD_KEY_RE.match(key)),
           f"{where}: field must be a MailerLite field key (lowercase letters, digits, _), got {key!r}")
    type_ = value.get("type")
    _check(type_ is None or type_ in FIELD_TYPES, f"{where}: type must be one of {', '.join(FIELD_TYPES)}")
    transform = value.get("transform")
    _check(transform is None or transform in TRANSFORMS, f"{where}: transform must be one of {', '.join(TRANSFORMS)}")
    for flag in ("true_value", "false_value"):
        _check(value.get(flag) is None or isinstance(value.get(flag), str), f"{where}: {flag} must be text")
    return FieldRule(prop, key, type_, transform, value.get("true_value"), value.get("false_value"))


def _fields(table: Any) -> Tuple[FieldRule, ...]:
    _check(isinstance(table, dict), "[fields] must be a table of property = field")
    rules: Dict[str, Optional[FieldRule]] = {p: FieldRule(p, f) for p, f in DEFAULT_FIELD_MAP.items()}
    for prop, value in table.items():
        _check(prop != "email", "[fields] email is always synced as the subscriber's address; remove it")
        rules[prop] = _field_rule(prop, value)
    kept = [r for r in rules.values() if r is not None]
    seen: Dict[str, str] = {}
    for rule in kept:
        _check(rule.field not in seen, f"[fields] {rule.prop} and {seen.get(rule.field)} both fill field {rule.field}")
        seen[rule.field] = rule.prop
    return tuple(kept)


def _group_name(name: str, where: str) -> str:
    _check(0 < len(name) <= GROUP_NAME_MAX, f"{where}: a group name has 1 to {GROUP_NAME_MAX} characters")
    return name


def _parse_groups(table: Any) -> Tuple[Tuple[str, ...], Tuple[PropertyGroupRule, ...], Tuple[Tuple[str, str], ...]]:
    _check(isinstance(table, dict), "[groups] must be a table")
    _no_unknown(table, {"all", "property", "lists"}, "[groups] ")
    static = tuple(_group_name(n, "[groups] all") for n in _string_list(table.get("all", []), "[groups] all"))
    by_property: List[PropertyGroupRule] = []
    props = table.get("property", {})
    _check(isinstance(props, dict), "[groups.property] must be a table of property = \"name with {label}\"")
    for prop, spec in props.items():
        where = f"[groups.property] {_property(prop, '[groups.property]')}"
        if isinstance(spec, str):
            spec = {"name": spec}
        _check(isinstance(spec, dict) and set(spec) <= {"name", "only"},
               f"{where}: give a name template (\"Stage: {{label}}\") or {{ name = ..., only = [...] }}")
        template = spec.get("name", "{label}")
        _check(isinstance(template, str) and ("{label}" in template or "{value}" in template),
               f"{where}: the name must contain {{label}} or {{value}}")
        only = frozenset(_string_list(spec.get("only", []), f"{where} only"))
        by_property.append(PropertyGroupRule(prop, template, only))
    lists = table.get("lists", {})
    _check(isinstance(lists, dict), "[groups.lists] must be a table of \"list id\" = \"group name\"")
    by_list = []
    for list_id, name in lists.items():
        _check(str(list_id).isdigit(), f"[groups.lists] {list_id!r} is not a HubSpot list id (a number)")
        _check(isinstance(name, str), f"[groups.lists] {list_id}: the group name must be text")
        by_list.append((str(list_id), _group_name(name, f"[groups.lists] {list_id}")))
    return static, tuple(by_property), tuple(by_list)


def _scope(table: Any) -> Tuple[Tuple[str, ...], Tuple[Tuple[str, FrozenSet[str]], ...]]:
    _check(isinstance(table, dict), "[scope] must be a table")
    _no_unknown(table, {"lists", "where"}, "[scope] ")
    lists = _string_list(table.get("lists", []), "[scope] lists")
    for list_id in lists:
        _check(list_id.isdigit(), f"[scope] lists: {list_id!r} is not a HubSpot list id (a number)")
    where = table.get("where", {})
    _check(isinstance(where, dict), "[scope.where] must be a table of property = [values]")
    filters = tuple((_property(p, "[scope.where]"), frozenset(_string_list(v, f"[scope.where] {p}")))
                    for p, v in where.items())
    return lists, filters


def _consent(table: Any) -> Tuple[str, ...]:
    _check(isinstance(table, dict), "[consent] must be a table")
    _no_unknown(table, {"optout_properties"}, "[consent] ")
    names = _string_list(table.get("optout_properties", list(DEFAULT_OPTOUT_PROPERTIES)),
                         "[consent] optout_properties")
    _check(bool(names), "[consent] optout_properties must name at least one property (hs_email_optout)")
    for name in names:  # consent is the contact's own: never read from a company or a deal
        _check("." not in name, f"[consent] optout_properties: {name!r} is not a contact property; opt-outs are "
                                f"read from the contact itself")
    return tuple(dict.fromkeys(_property(n, "[consent] optout_properties") for n in names))


def _mass_leave(data: Dict[str, Any]) -> Tuple[float, int]:
    percent = data.get("mass_leave_percent", 10)
    _check(isinstance(percent, (int, float)) and not isinstance(percent, bool) and 0 <= percent <= 100,
           "mass_leave_percent must be a number from 0 to 100")
    minimum = data.get("mass_leave_min", 25)
    _check(isinstance(minimum, int) and not isinstance(minimum, bool) and minimum >= 0,
           "mass_leave_min must be a whole number, 0 or more")
    return float(percent), minimum


def _top_level_value(name: str, value: Any) -> bool:
    """Whether `value` is what the top-level setting `name` takes (and so no field key, group or list)."""
    if name == "on_leave":
        return value in ON_LEAVE
    if name in ("mass_leave_percent", "mass_leave_min"):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return name in ("create_missing_fields", "write_back", "engagement") and value is True


def _misplaced_settings(table: Dict[str, Any], section: str = "") -> None:
    """A top-level setting written below a [section] (appended at the end of the file) belongs to that
    section in TOML: say so, rather than an error about a field, a group or a HubSpot property it is not."""
    for key, value in table.items():
        if section and _top_level_value(key, value):
            raise _Problem(f"{key} is inside [{section}]: in TOML every line after a [section] line belongs to "
                           f"it; move {key} to the top of the file, above the first [section]")
        if isinstance(value, dict):
            _misplaced_settings(value, f"{section}.{key}" if section else key)


def parse_mapping(data: Dict[str, Any], env_groups: Sequence[str] = ()) -> Mapping:
    """A Mapping from the parsed TOML document; raises _Problem with a one-line reason."""
    _misplaced_settings(data)
    _no_unknown(data, TOP_LEVEL, "")
    create = data.get("create_missing_fields", False)
    _check(isinstance(create, bool), "create_missing_fields must be true or false")
    on_leave = data.get("on_leave", "remove_from_groups")
    _check(on_leave in ON_LEAVE, f"on_leave must be one of {', '.join(ON_LEAVE)}")
    _check(isinstance(data.get("write_back", False), bool), "write_back must be true or false")
    _check(isinstance(data.get("engagement", False), bool), "engagement must be true or false")
    rules = _fields(data.get("fields", {}))
    static, by_property, by_list = _parse_groups(data.get("groups", {}))
    lists, where = _scope(data.get("scope", {}))
    static = tuple(dict.fromkeys(tuple(env_groups) + static))  # keep order, no duplicates
    optouts = _consent(data.get("consent", {}))
    percent, minimum = _mass_leave(data)
    return Mapping(rules, static, by_property, by_list, lists, where, create, on_leave,
                   bool(data.get("write_back", False)), optouts, percent, minimum,
                   bool(data.get("engagement", False)))


def env_group_names(raw: Optional[str]) -> Tuple[str, ...]:
    names = tuple(n.strip() for n in (raw or "").split(",") if n.strip())
    for name in names:
        if len(name) > GROUP_NAME_MAX:
            raise ConfigError(f"MAILERLITE_GROUPS: group names have at most {GROUP_NAME_MAX} characters")
    return names


MAPPING_FILE_MAX_BYTES = 1024 * 1024  # a mapping is a page of TOML


def _read_small_file(path: Path) -> str:
    """A regular file of sane size: /dev/zero, a FIFO or a folder is an error at once, never a hang."""
    fd = os.open(str(path), os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"mapping file {path} is not a regular file; see mapping.example.toml")
        if info.st_size > MAPPING_FILE_MAX_BYTES:
            raise ConfigError(f"mapping file {path} is {info.st_size // 1024} KB; is it the right file?")
        return hand_written_text(os.read(fd, MAPPING_FILE_MAX_BYTES + 1), f"mapping file {path}")
    finally:
        os.close(fd)


def load_mapping(path: Optional[Path], env_groups: Sequence[str] = ()) -> Mapping:
    """The mapping from `path`, or the default one; ConfigError names the file and the problem."""
    if path is None:
        return Mapping.default(static_groups=tuple(env_groups))
    try:
        text = _read_small_file(path)
    except FileNotFoundError:
        raise ConfigError(f"mapping file {os.path.abspath(path)} does not exist; see mapping.example.toml") from None
    except OSError as exc:
        raise ConfigError(f"cannot read mapping file {path} ({exc.__class__.__name__})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(toml_errors.explain(path, str(exc), text)) from None
    try:
        return parse_mapping(data, env_groups)
    except _Problem as exc:
        raise ConfigError(f"mapping file {path}: {exc}") from None
