"""One configuration mechanism: dataclasses whose fields carry their help and their valid range.

Every setting of the project — training configs, the pipeline config, the code-switching block, the bench —
is a dataclass built with `option(...)`. The same declaration then drives:

- `from_dict(cls, raw, source)`: YAML / dict in, a checked instance out. Unknown keys get a did-you-mean,
  wrong types and out-of-range values one line naming the file and the key
  (`config.yaml: training.max_steps: must be at least 1, got 0`).
- `check(instance, source)`: the same type and range checks on an instance built in code.
- `add_arguments(parser, cls)` / `overrides_from_args(args, cls)`: command-line flags with the field's help.
- `read_yaml(path, overrides)`: a YAML mapping with `--set a.b=value` overrides applied, errors with line numbers.
- `load_yaml(text, where)`: the one YAML parser for what a user hands us; what a document may expand to is
  bounded (`YAML_VALUE_BUDGET`), so nested aliases (the "billion laughs" shape) are one error, not gigabytes.

Schema checks never touch the file system: whether `data.train` exists is the caller's concern, checked
separately, so a config can be validated completely before any file or model is needed.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import os
import re
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from lingualift.errors import LinguaLiftError

_FLOAT_TEXT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def option(default: Any = dataclasses.MISSING, *, help: str = "", default_factory: Any = dataclasses.MISSING,
           min: float | None = None, max: float | None = None, above: float | None = None,
           below: float | None = None, choices: tuple | None = None, null: str | None = None,
           flag: str | None = None) -> Any:
    """A dataclass field with its help text and valid values.

    `min`/`max` are inclusive bounds, `above`/`below` exclusive ones, `choices` the allowed values;
    `null` says what `None` means when the field is optional (shown in the error, e.g. "null for all");
    `flag` names its command-line flag when that is not `--field-name`.
    """
    metadata = {"help": help, "min": min, "max": max, "above": above, "below": below, "choices": choices,
                "null": null, "flag": flag}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def schema_fields(cls) -> list[dataclasses.Field]:
    """The fields that are settings (`init=True`); runtime attributes are declared with `init=False`."""
    return [f for f in dataclasses.fields(cls) if f.init]


def from_dict(cls, raw: Any, source: str, prefix: str = ""):
    """Build `cls` from a mapping, checking keys, types and ranges; errors name `source: prefix.key`.

    With `source=""` the settings came from the command line and errors name the flag (`--batch-size: …`).
    """
    if not isinstance(raw, dict):
        raise LinguaLiftError(f"{source}: {prefix.rstrip('.') or 'top level'}: expected a mapping, got {raw!r}")
    fields = {f.name: f for f in schema_fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in raw.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else f" (known: {', '.join(fields)})"
            raise LinguaLiftError(f"{source}: {prefix}{key}: unknown key{hint}")
        kwargs[key] = coerce(hints[key], value, source, _where(source, prefix, fields[key]))
    missing = [f for f in fields.values() if f.name not in kwargs
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise LinguaLiftError(_place(source, _where(source, prefix, missing[0])) + " is required")
    instance = cls(**kwargs)
    check(instance, source, prefix, nested=False)
    return instance


def flag_of(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _where(source: str, prefix: str, f: dataclasses.Field) -> str:
    return f"{prefix}{f.name}" if source else flag_of(f)


def _place(source: str, where: str) -> str:
    return f"{source}: {where}" if source else where


def coerce(annotation, value: Any, source: str, where: str):
    """`value` as `annotation` (a dataclass, a union, a scalar, a typed dict / list / tuple), or a clear error."""
    if dataclasses.is_dataclass(annotation):
        return from_dict(annotation, value if value is not None else {}, source, f"{where}.")
    options = typing.get_args(annotation) if _is_union(annotation) else (annotation,)
    if value is None and type(None) in options:
        return None
    for option_type in options:
        base = typing.get_origin(option_type) or option_type
        args = typing.get_args(option_type)
        if base is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if base is float and isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()):
            return float(value)  # `1e-3`: YAML 1.1 wants `1.0e-3` for a float
        if base is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if base in (str, bool) and isinstance(value, base):
            return value
        if base is dict and isinstance(value, dict):
            if len(args) == 2:
                return {k: coerce(args[1], v, source, f"{where}.{k}") for k, v in value.items()}
            return value
        if base in (list, tuple) and isinstance(value, (list, tuple)):
            item = args[0] if args else Any
            items = [value_ if item is Any else coerce(item, value_, source, f"{where}[{i}]")
                     for i, value_ in enumerate(value)]
            return tuple(items) if base is tuple else items
        if option_type is Any:
            return value
    expected = " or ".join(_type_name(o) for o in options)
    raise LinguaLiftError(f"{_place(source, where)}: expected {expected}, got {value!r}")


def check(instance, source: str, prefix: str = "", nested: bool = True) -> None:
    """Every field of `instance` within its declared range / choices (recursively into nested settings)."""
    for f in schema_fields(type(instance)):
        value = getattr(instance, f.name)
        where = _where(source, prefix, f)
        if dataclasses.is_dataclass(value):
            if nested:
                check(value, source, f"{where}.")
            continue
        for item_where, item in _scalars(where, value):
            rule = _violated_rule(f.metadata, item)
            if rule:
                raise LinguaLiftError(f"{_place(source, item_where)}: must be {rule}, got {item!r}")


def _scalars(where: str, value):
    """The value itself, or each value of a dict / list (e.g. per-language weights share one range)."""
    if isinstance(value, dict):
        return [(f"{where}.{k}", v) for k, v in value.items()]
    if isinstance(value, (list, tuple)):
        return [(f"{where}[{i}]", v) for i, v in enumerate(value)]
    return [(where, value)]


def _violated_rule(meta: dict, value) -> str | None:
    if value is None:
        return None
    if meta.get("choices") is not None and value not in meta["choices"]:
        return "one of " + ", ".join(map(str, meta["choices"]))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    bounds = [(meta.get("min"), lambda v, b: v >= b, "at least {}"), (meta.get("above"), lambda v, b: v > b, "above {}"),
              (meta.get("max"), lambda v, b: v <= b, "at most {}"), (meta.get("below"), lambda v, b: v < b, "below {}")]
    broken = (isinstance(value, float) and not math.isfinite(value)) \
        or any(bound is not None and not ok(value, bound) for bound, ok, _ in bounds)
    if not broken:
        return None
    rule = " and ".join(text.format(bound) for bound, _, text in bounds if bound is not None) or "a finite number"
    return rule + (f" (or null {meta['null']})" if meta.get("null") else "")


def to_dict(instance) -> dict:
    """The settings of `instance` as plain YAML-able data (tuples as lists)."""
    out = {}
    for f in schema_fields(type(instance)):
        value = getattr(instance, f.name)
        out[f.name] = to_dict(value) if dataclasses.is_dataclass(value) else \
            list(value) if isinstance(value, tuple) else value
    return out


def describe(cls, prefix: str = "") -> list[tuple[str, str, Any, str]]:
    """(key, type, default, help) for every setting, nested sections flattened (`training.lora.r`)."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in schema_fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            rows += describe(hints[f.name], f"{prefix}{f.name}.")
            continue
        default = f.default if f.default is not dataclasses.MISSING else \
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None
        rows.append((f"{prefix}{f.name}", _type_name(hints[f.name]), default, f.metadata.get("help", "")))
    return rows


def add_arguments(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = ()) -> None:
    """One `--flag` per scalar / list setting of `cls`, with the field's help; unset flags stay None."""
    hints = typing.get_type_hints(cls)
    for f in schema_fields(cls):
        if f.name in skip or dataclasses.is_dataclass(hints[f.name]):
            continue
        flag = flag_of(f)
        annotation = hints[f.name]
        options = [o for o in (typing.get_args(annotation) if _is_union(annotation) else (annotation,))
                   if o is not type(None)]
        base = typing.get_origin(options[0]) or options[0]
        default = f.default if f.default is not dataclasses.MISSING else \
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None
        text = f.metadata.get("help", "")
        if base is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                                help=f"{text} (default: {'on' if default else 'off'})")
            continue
        listed = base in (list, tuple)
        choices = f.metadata.get("choices")
        metavar = ",".join(map(str, choices)) if choices and not listed else \
            "N" if base in (int, float) else "A,B,..." if listed else f.name.upper()
        notes = [f"from {','.join(map(str, choices))}"] if choices and listed else []
        if default not in (None, (), [], ""):
            notes.append("default " + (",".join(map(str, default)) if listed else str(default)))
        parser.add_argument(flag, dest=f.name, default=None, metavar=metavar,
                            help=text + (f" ({'; '.join(notes)})" if notes else ""))


def overrides_from_args(args: argparse.Namespace, cls) -> dict:
    """The settings given on the command line (flags from `add_arguments`), as raw values for `from_dict`.

    Text is parsed as YAML only where the field is not text (`--batch-size 8`, `--no-train`); lists are
    comma-separated (`--eval-batch-sizes 1,8,32`, `--stages align,sft`).
    """
    hints = typing.get_type_hints(cls)
    raw = {}
    for f in schema_fields(cls):
        value = getattr(args, f.name, None)
        if value is None:
            continue
        annotation = hints[f.name]
        options = typing.get_args(annotation) if _is_union(annotation) else (annotation,)
        bases = {typing.get_origin(o) or o for o in options}
        if isinstance(value, str) and bases & {list, tuple}:
            item_types = {t for o in options for t in typing.get_args(o)}
            items = [part.strip() for part in value.split(",") if part.strip()]
            value = items if str in item_types else [_scalar(item) for item in items]
        elif isinstance(value, str) and str not in bases:
            value = _scalar(value)
        raw[f.name] = value
    return raw


def _scalar(text: str):
    """`8` → 8, `1e-3` → stays text (coerce reads it as a float), `true` → True; anything else stays text."""
    try:
        value = load_yaml(text, repr(text)) if text.strip() else text
    except LinguaLiftError:
        return text  # not YAML at all: the field's type check names the flag
    return value if isinstance(value, (int, float, bool)) or value is None else text


def read_yaml(path: str | os.PathLike, overrides: list[str] | None = None) -> dict:
    """Read a YAML mapping and apply `--set a.b=value` overrides; errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise LinguaLiftError(f"config file not found: {path}")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise LinguaLiftError(f"{path}:{line}: not valid UTF-8; re-encode the file as UTF-8") from None
    raw = load_yaml(text, str(path)) or {}
    if not isinstance(raw, dict):
        raise LinguaLiftError(f"{path}: the top level must be a mapping of sections")
    for override in overrides or []:
        apply_override(raw, override, str(path))
    return raw


def apply_override(raw: dict, override: str, source: str) -> None:
    """`section.key=value` (value parsed as YAML) into the nested mapping `raw`."""
    if "=" not in override:
        raise LinguaLiftError(f"--set {override!r}: expected section.key=value")
    key, value = override.split("=", 1)
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise LinguaLiftError(f"--set {key}: {part} is not a section in {source}")
    node[parts[-1]] = load_yaml(value, f"--set {key}") if value != "" else ""


YAML_VALUE_BUDGET = 100_000  # values (scalars, lists, mappings) a config may expand to once aliases are followed
YAML_TEXT_LIMIT = 1 << 20  # characters of YAML parsed at all: configs are a few KB; parsing is not free


def load_yaml(text: str, where: str):
    """Parse YAML safely and boundedly: `where` (a file or flag) and the line name any problem.

    The text may be at most `YAML_TEXT_LIMIT` characters. Aliases are allowed, but the document they expand to must
    stay within `YAML_VALUE_BUDGET` values and may not contain itself; the count is taken on the parsed node graph,
    before anything is built, so a 1 KB file of nested aliases is refused in milliseconds instead of growing to
    gigabytes in whatever walks it later.
    """
    if len(text) > YAML_TEXT_LIMIT:
        raise LinguaLiftError(f"{where}: {len(text):,} characters of YAML; a lingualift config is a few KB (the "
                              f"limit is {YAML_TEXT_LIMIT:,}); check that this is the file you meant")
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, where)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise LinguaLiftError(f"{where}{line}: invalid YAML ({getattr(exc, 'problem', None) or exc})") from None
    except RecursionError:
        raise LinguaLiftError(f"{where}: YAML nested too deeply to read; flatten it") from None
    finally:
        loader.dispose()


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


def _check_expansion(root: yaml.Node, where: str) -> None:
    """Count the values `root` expands to (a node reached through n aliases counts n times) without expanding it;
    iterative, each distinct node visited once."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in _children(node))
            if sizes[key] > YAML_VALUE_BUDGET:
                raise LinguaLiftError(
                    f"{where}:{node.start_mark.line + 1}: this value expands to more than {YAML_VALUE_BUDGET:,} values "
                    "through YAML aliases (*name); write the values out or use fewer nested aliases")
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise LinguaLiftError(f"{where}:{node.start_mark.line + 1}: a YAML alias refers to a value that contains "
                                  "it (a recursive structure); configs must be trees")
        on_path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)


def _is_union(annotation) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _type_name(annotation) -> str:
    if _is_union(annotation):
        return " or ".join(_type_name(a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation).replace("typing.", ""))


def parse_languages(value, where: str, known: typing.Sequence[str] | None = None, *, allow_all: bool = True,
                    allow_none: bool = False) -> list[str]:
    """The one reader of a language list, in configs and flags alike.

    `all` (every `known` language), `none` (when allowed: an empty list), a comma-separated string or a list;
    codes are stripped, repeats dropped (a language named twice would be evaluated and counted twice), and checked
    against `known` when given.
    """
    if value == "all" and allow_all and known is not None:
        return list(known)
    if allow_none and value in ("none", None, []):
        return []
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(item, str) for item in items):
        options = "'all', " * (allow_all and known is not None) + "'none', " * allow_none
        raise LinguaLiftError(f"{where}: expected {options}a comma-separated list of language codes, got {value!r}")
    items = list(dict.fromkeys(item.strip() for item in items if item.strip()))  # `de,de` is one language
    if not items and not allow_none:
        raise LinguaLiftError(f"{where}: give at least one language code, e.g. de,ru")
    unknown = [item for item in items if known is not None and item not in known]
    if unknown:
        raise LinguaLiftError(f"{where}: unknown language(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return items
