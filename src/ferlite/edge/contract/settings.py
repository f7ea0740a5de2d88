"""Settings, once for every ferlite command: frozen dataclasses whose fields carry their rules.

A config is a frozen dataclass deriving from `Settings`; each field is declared with `setting(default,
"one-line doc", low=..., high=..., choices=..., ...)`. From the fields' types (`typing.get_type_hints`,
so `int | None` and `Optional[int]` alike) and rules come, in one place for fer-edge, fer-mqtt and
fer-train:

- `check`, run on every construction (TOML, flags, `dataclasses.replace`, the Python API): types, ranges,
  finiteness of every float, choices, patterns, no NUL in any string or path, no empty path;
- `load`: the TOML file (through the one hardened reader, `read_toml`), unknown keys refused with at
  most 10 named, then the settings typed on the command line;
- groups: a field may name its TOML table (`setting(..., group="detect")`); the file may then give it
  in `[detect]` or, as before, flat at the top (one INFO notice per file says it can be grouped). A key
  in the wrong table, an unknown table, or a setting given both ways is refused. Groups are optional
  per field: a config without any reads and describes exactly as a flat file;
- `check_files`: every file a config names for reading is a readable regular file (a FIFO is refused,
  not waited on);
- `describe`: the effective settings as TOML that `load` reads back (grouped settings in their tables);
- parts: a config may be composed of parts that live beside the code reading them (fer-edge's EdgeConfig
  derives from DetectSettings in the detector, TrackSettings in tracking, InputSettings in sources and
  FeedSettings in the feed: one flat set of fields, one file, one set of flags); `Part.of(config)` hands
  that code its part and nothing else.

Standard library only: fer-mqtt and fer-watch import this without numpy or OpenCV.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import sys
import types
import typing
from collections.abc import Callable, Container, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, ClassVar, TypeVar

from .errors import ConfigError, FerliteError, FileRefusedError
from .files import open_regular, read_bytes

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
MAX_LISTED = 10  # unknown keys named in an error; the rest are counted
MAX_SHOWN = 60  # characters of a bad value shown in an error
MAX_CONFIG_BYTES = 1 << 20  # a config is a few hundred bytes; anything near this is not one

log = logging.getLogger("ferlite.settings")


@dataclass(frozen=True)
class Rule:
    """What a setting accepts beyond its type. Ranges are inclusive (`above`: the low end is not);
    for a tuple setting they apply to each item."""

    doc: str = ""
    low: float | None = None
    high: float | None = None
    above: bool = False
    choices: tuple[Any, ...] = ()
    fold_case: bool = False  # choices compared without case (log levels)
    pattern: str | None = None  # the whole string must match (re.fullmatch)
    says: str = ""  # what `pattern` asks for, in words: "{name} must be {says}"
    non_empty: bool = False  # strings and tuples; a path is never empty
    max_bytes: int | None = None  # of the string encoded as UTF-8 (a socket path: 107)
    reads: bool = False  # a file the command reads: check_files refuses what is not a readable regular file
    adds: bool = False  # a list setting: items typed on the command line add to the file's
    check: Callable[[Any], str | None] | None = None  # what else is wrong with a value ("must be ..."), or None
    parse: Callable[[Any], Any] | None = None  # a TOML value to the field's value, instead of the type's rule
    show: Callable[[Any], str] | None = None  # the value as TOML, for describe()
    group: str = ""  # the TOML table it may be given in ([detect]); "" for the top level only


def setting(default: Any, doc: str = "", **rules: Any) -> Any:
    """A dataclass field with its default, one-line doc and rules (see Rule)."""
    return dataclasses.field(default=default, metadata={"rule": Rule(doc=doc, **rules)})


def rule_of(field: dataclasses.Field[Any]) -> Rule:
    rule = field.metadata.get("rule")
    return rule if isinstance(rule, Rule) else Rule()


class Settings:
    """The base of every config: checked on construction (check), then the config's own relations
    between settings (`check_relations`)."""

    error: ClassVar[type[ConfigError]] = ConfigError  # what a refusal raises
    dash_keys: ClassVar[bool] = False  # TOML keys may also be written as the long flags (batch-size)
    key_hints: ClassVar[Mapping[str, str]] = {}  # an unknown key -> a hint appended to the refusal

    def __post_init__(self) -> None:
        check(self)
        self.check_relations()

    def check_relations(self) -> None:
        """Rules between settings; raise self.error. A part (below) that has some calls
        super().check_relations() first, so that a config composed of several parts checks them all."""

    @classmethod
    def of(cls: type[S], config: Settings) -> S:
        """This part of a config composed of parts (EdgeConfig derives from DetectSettings, TrackSettings,
        ...): the part's own settings, as the code that reads them takes them. The rules were checked
        when `config` was made; they are checked again here (microseconds)."""
        return cls(**{f.name: getattr(config, f.name) for f in dataclasses.fields(cls)})  # type: ignore[arg-type]


S = TypeVar("S", bound=Settings)


def short(value: Any) -> str:
    """repr() of a value, cut to a length that fits one error line."""
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


# --- types ----------------------------------------------------------------------------------------------


_HINTS: dict[type, dict[str, Any]] = {}
_TYPES: dict[type, dict[str, tuple[Any, bool]]] = {}


def _hints(cls: type) -> dict[str, Any]:
    """Each field's type, resolved from its annotation (PEP 563 strings included); once per class."""
    if cls not in _HINTS:
        hints = typing.get_type_hints(cls)
        _HINTS[cls] = {f.name: hints[f.name] for f in dataclasses.fields(cls)}
    return _HINTS[cls]


def _types(cls: type) -> dict[str, tuple[Any, bool]]:
    """Each field's type without None, and whether None is allowed."""
    if cls not in _TYPES:
        _TYPES[cls] = {name: _without_none(hint) for name, hint in _hints(cls).items()}
    return _TYPES[cls]


def _without_none(hint: Any) -> tuple[Any, bool]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"a setting is one type or None, not {hint}")
        return args[0], len(args) < len(typing.get_args(hint))
    return hint, False


def _item_type(hint: Any) -> Any:
    """X of tuple[X, ...]; None for any other type."""
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return args[0]
    return None


def _type_name(hint: Any) -> str:
    item = _item_type(hint)
    if item is str:
        return "a list of strings"
    if item is int:
        return "comma-separated whole numbers (e.g. 32,64)"
    if hint is Path:
        return "str"
    return str(getattr(hint, "__name__", hint))


def _is(hint: Any, value: Any) -> bool:
    """value is of type hint (an int is a float; a bool is neither)."""
    if isinstance(value, bool):
        return hint is bool
    if hint is float:
        return isinstance(value, (int, float))
    if hint is Path:
        return isinstance(value, PurePath)
    item = _item_type(hint)
    if item is not None:
        return isinstance(value, tuple) and all(_is(item, v) for v in value)
    return isinstance(value, hint)


def coerce(name: str, hint: Any, value: Any, error: type[ConfigError] = ConfigError) -> Any:
    """A TOML, JSON or flag value as the field's type: an int for a float, a string for a Path, a list
    (or one string, or "32,64" for whole numbers) for a tuple. `error` naming the setting otherwise."""
    base, optional = _without_none(hint)
    if value is None and optional:
        return None
    item = _item_type(base)
    wrong = error(f"{name} must be {_type_name(base)}, got {short(value)}")
    if base is float and _is(float, value):
        try:
            return float(value)
        except OverflowError as e:  # a TOML integer of hundreds of digits
            raise error(f"{name} must be a finite number, got {short(value)}") from e
    if base is Path and isinstance(value, str):
        if not value.strip():  # Path("") is "."
            raise error(f"{name} must not be empty (leave it out for the default)")
        return Path(value)
    if item is str:
        items = [value] if isinstance(value, str) else value
        if isinstance(items, list) and all(isinstance(v, str) for v in items):
            return tuple(items)
    elif item is int:
        items = value.split(",") if isinstance(value, str) else value
        if isinstance(items, list) and not any(isinstance(v, (bool, float)) for v in items):
            try:
                return tuple(int(v) for v in items if not isinstance(v, str) or v.strip())
            except (TypeError, ValueError) as e:  # "a,b"
                raise wrong from e
    elif _is(base, value):
        return value
    raise wrong


# --- checks ---------------------------------------------------------------------------------------------


def check(config: Settings) -> None:
    """Every field of `config` against its type and rule; config.error naming the first that fails."""
    for field in dataclasses.fields(config):  # type: ignore[arg-type]
        problem = _problem(field.name, _types(type(config))[field.name], rule_of(field), getattr(config, field.name))
        if problem:
            raise config.error(f"{field.name} {problem}")


def _problem(name: str, typed: tuple[Any, bool], rule: Rule, value: Any) -> str | None:
    """What is wrong with one setting's value ("must be ..., got ..."), or None."""
    hint, optional = typed
    if value is None:
        return None if optional else f"must be {_type_name(hint)}, got None"
    if not _is(hint, value):
        return f"must be {_type_name(hint)}, got {short(value)}"
    is_tuple = _item_type(hint) is not None
    if is_tuple and rule.non_empty and not value:
        return "must not be empty"
    for item in value if is_tuple else (value,):
        if isinstance(item, (str, PurePath)):
            problem = _text_problem(rule, str(item), isinstance(item, PurePath))
        elif isinstance(item, (int, float)) and not isinstance(item, bool):
            problem = _number_problem(rule, item)
        else:
            problem = None
        if problem:
            return f"{problem}, got {short(item)}"
    if rule.choices and not _chosen(rule, value):
        return f"must be {_either(rule.choices)}, got {short(value)}"
    return rule.check(value) if rule.check else None


def _number_problem(rule: Rule, number: float) -> str | None:
    finite = isinstance(number, int) or math.isfinite(number)
    span = f" (within {rule.low}..{rule.high})" if rule.low is not None and rule.high is not None else ""
    if not finite:
        return f"must be a finite number{span}"
    if rule.low is not None and (number <= rule.low if rule.above else number < rule.low):
        return f"must be {'above' if rule.above else 'at least'} {rule.low}{span}"
    if rule.high is not None and number > rule.high:
        return f"must be at most {rule.high}{span}"
    return None


def _text_problem(rule: Rule, text: str, is_path: bool) -> str | None:
    if "\0" in text:
        return "must not contain a NUL character"
    if (rule.non_empty or is_path) and not text.strip():
        return "must not be empty (leave it out for the default)"
    if rule.max_bytes is not None:
        try:
            size = len(os.fsencode(text))
        except UnicodeEncodeError:
            return "must be text the file system can take"
        if size > rule.max_bytes:
            return f"must be at most {rule.max_bytes} bytes long"
    if rule.pattern is not None and re.fullmatch(rule.pattern, text) is None:
        return f"must be {rule.says or 'of the form ' + rule.pattern}"
    return None


def _chosen(rule: Rule, value: Any) -> bool:
    if rule.fold_case and isinstance(value, str):
        return value.upper() in {str(c).upper() for c in rule.choices}
    return any(value == c and type(value) is type(c) for c in rule.choices)


def _either(choices: Iterable[Any]) -> str:
    names = [str(c) for c in choices]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def refuse_unknown(names: Iterable[str], known: Container[str], where: str,
                   error: type[ConfigError] = ConfigError, hints: Mapping[str, str] | None = None,
                   what: str = "setting(s)") -> None:
    """`error` with one line naming the names that are not `known` (at most 10, then `and N more`),
    if there are any; `hints` add a word on a known mistake (`password` -> use password_file)."""
    unknown = sorted(str(name) for name in set(names) if name not in known)
    if unknown:
        listed = ", ".join(short(name).strip("'\"") for name in unknown[:MAX_LISTED])
        more = f" and {len(unknown) - MAX_LISTED} more" if len(unknown) > MAX_LISTED else ""
        named = set(unknown)
        hint = "".join(text for key, text in (hints or {}).items() if key in named)
        raise error(f"{where}: unknown {what} {listed}{more}{hint}")


# --- loading --------------------------------------------------------------------------------------------


def coerce_values(cls: type[Settings], values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """TOML-like values (keys as the fields, or as the long flags where cls.dash_keys) as the fields'
    types; unknown keys and wrong types refused with cls.error naming `where` and the setting."""
    rules = {f.name: rule_of(f) for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    known = set(rules) | ({name.replace("_", "-") for name in rules} if cls.dash_keys else set())
    refuse_unknown(values, known, where, cls.error, cls.key_hints)
    checked: dict[str, Any] = {}
    for key, value in values.items():
        name = key.replace("-", "_") if cls.dash_keys else key
        parse = rules[name].parse
        try:
            checked[name] = parse(value) if parse else coerce(name, _hints(cls)[name], value, cls.error)
        except ConfigError as e:
            raise cls.error(f"{where}: {e}") from e
    return checked


def groups(cls: type[Settings]) -> dict[str, str]:
    """Each grouped setting's table (field name -> group). A group may not share a field's name: a
    table is then never mistaken for a setting."""
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    grouped = {f.name: rule_of(f).group for f in fields if rule_of(f).group}
    clash = set(grouped.values()) & {f.name for f in fields}
    if clash:
        raise TypeError(f"{cls.__name__}: group(s) named like a setting: {', '.join(sorted(clash))}")
    return grouped


def ungroup(cls: type[Settings], values: Mapping[str, Any], where: str) -> tuple[dict[str, Any], list[str]]:
    """A TOML file's values with its [group] tables flattened into their settings, and the grouped
    settings the file gives flat (for the notice). cls.error naming `where` and the key for a table
    that is not a group, a key in a table it does not belong to, or a setting given both ways."""
    grouped = groups(cls)
    if not grouped:
        return dict(values), []
    fields = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    known = set(fields) | ({name.replace("_", "-") for name in fields} if cls.dash_keys else set())
    names = set(grouped.values())
    tables = sorted(key for key, value in values.items() if isinstance(value, dict))
    try:
        refuse_unknown(tables, names, where, cls.error, what="table(s)")
    except ConfigError as e:
        raise cls.error(f"{e} (the tables are {_either(sorted(names))})") from None
    flat = {key: value for key, value in values.items() if key not in tables}
    given = {key.replace("-", "_") for key in flat}
    flat_grouped = sorted(name for name in given if name in grouped)
    for table in tables:
        refuse_unknown(values[table], known, f"{where} [{table}]", cls.error, cls.key_hints)
        for key, value in values[table].items():
            name = key.replace("-", "_")
            home = f"[{grouped[name]}]" if name in grouped else "the top level"
            if home != f"[{table}]":
                raise cls.error(f"{where}: {key} belongs in {home}, not in [{table}]")
            if name in given:
                raise cls.error(f"{where}: {key} is given twice, at the top level and in [{table}]")
            given.add(name)
            flat[key] = value
    return flat, flat_grouped


def replace(config: S, values: Mapping[str, Any], where: str) -> S:
    """dataclasses.replace, with a refusal prefixed by `where`."""
    try:
        return dataclasses.replace(config, **values)  # type: ignore[type-var]
    except ConfigError as e:
        raise config.error(f"{where}: {e}") from e


def make(cls: type[S], values: Mapping[str, Any], where: str = "config") -> S:
    """A config from TOML-like values (grouped settings flat or in their tables) on top of the defaults;
    see coerce_values."""
    checked = coerce_values(cls, ungroup(cls, values, where)[0], where)
    try:
        return cls(**checked)
    except ConfigError as e:
        raise cls.error(f"{where}: {e}") from e


def load(cls: type[S], path: str | os.PathLike[str] | None, overrides: Mapping[str, Any]) -> S:
    """The defaults, then the TOML file (if any), then only the settings typed on the command line
    (`overrides`, named as the fields); a list setting marked `adds` adds the typed items to the file's."""
    values = read_toml(path, cls.error) if path is not None else {}
    values, flat = ungroup(cls, values, str(path))
    if flat:
        tables = sorted({groups(cls)[name] for name in flat})
        log.info("%s: %s may be grouped in table(s) %s, as --check-config prints them (flat keys keep "
                 "working)", path, ", ".join(flat[:MAX_LISTED]) + ("..." if len(flat) > MAX_LISTED else ""),
                 ", ".join(f"[{t}]" for t in tables))
    config = make(cls, values, str(path) if path is not None else "config")
    typed = coerce_values(cls, overrides, "command line")
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        if rule_of(field).adds and field.name in typed:
            typed[field.name] = getattr(config, field.name) + typed[field.name]
    return replace(config, typed, "command line")


# --- files ----------------------------------------------------------------------------------------------


def read_file(path: str | os.PathLike[str], error: type[FerliteError], label: str, what: str,
              max_bytes: int) -> tuple[bytes, os.stat_result]:
    """A settings file's bytes and its stat (read_bytes); `error` with one line starting with `label`
    otherwise."""
    try:
        return read_bytes(path, max_bytes)
    except FileRefusedError as e:
        raise error(_refusal(e, label, what)) from e


def _refusal(e: FileRefusedError, label: str, what: str) -> str:
    """A settings file's refusal in one line: "edge.toml: config must be a regular file, not a FIFO"."""
    named = f"{what} " if what else ""
    if e.kind is not None:
        return f"{label}: {named}must be a regular file, not {e.kind}"
    if e.limit is not None:
        size = f"is {e.size} bytes, more than {e.limit}" if e.size is not None else f"is more than {e.limit} bytes"
        return f"{label}: {named}{size}"
    return f"{label}: cannot read {named}({e.strerror})"


def read_toml(path: str | os.PathLike[str], error: type[ConfigError] = ConfigError) -> dict[str, Any]:
    """A config file's TOML: a regular file of at most MAX_CONFIG_BYTES, UTF-8; `error` with one line
    naming the file otherwise."""
    data, _ = read_file(path, error, str(path), "config", MAX_CONFIG_BYTES)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{path}: not valid UTF-8 (byte {e.start})") from e
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise error(f"{path}: not valid TOML ({e})") from e
    except RecursionError as e:
        raise error(f"{path}: not valid TOML (nested too deeply)") from e


def file_settings(cls: type[Settings]) -> tuple[str, ...]:
    """The settings that name a file the command reads."""
    return tuple(f.name for f in dataclasses.fields(cls) if rule_of(f).reads)  # type: ignore[arg-type]


def check_files(config: Settings) -> None:
    """Every file the config names for reading is a regular file this process can open: config.error
    naming the setting and the file otherwise (at start-up, before anything waits on it)."""
    for name in file_settings(type(config)):
        path = getattr(config, name)
        if path is not None:
            try:
                fd, _ = open_regular(path)
            except FileRefusedError as e:
                raise config.error(_refusal(e, f"{name} {path}", "")) from e
            os.close(fd)


# --- describe -------------------------------------------------------------------------------------------


def describe(config: Settings) -> str:
    """The effective settings as TOML (load() reads it back): each one on its own line, after a comment
    saying what it is and its range or choices; a setting left to its computed default (None) is a comment.
    The top-level settings first, then each group's in its [table], in the order the fields declare them."""
    tables: dict[str, list[str]] = {}
    for field in dataclasses.fields(config):  # type: ignore[arg-type]
        rule = rule_of(field)
        lines = tables.setdefault(rule.group, [])
        span = f"{rule.low}..{rule.high}" if rule.low is not None and rule.high is not None else ""
        span = span or (_either(rule.choices) if rule.choices else "")
        if rule.doc or span:
            lines.append("# " + "; ".join(part for part in (rule.doc, span) if part))
        value = getattr(config, field.name)
        if value is None:
            lines.append(f"# {field.name} = (default)")
        else:
            lines.append(f"{field.name} = {rule.show(value) if rule.show else toml_value(value)}")
    top = tables.pop("", [])
    return "\n".join(top + [line for group, lines in tables.items() for line in ["", f"[{group}]", *lines]])


def toml_value(value: Any) -> str:
    """A setting's value in TOML."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (str, PurePath)):
        return json.dumps(str(value))  # a JSON string is a TOML basic string
    if isinstance(value, tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)
