"""lingualift.schema: one declaration gives YAML checking, range errors, CLI flags and help."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import pytest

from lingualift.errors import LinguaLiftError
from lingualift.schema import add_arguments, check, describe, from_dict, option, overrides_from_args, to_dict


@dataclass
class Inner:
    rate: float = option(1e-3, above=0, help="learning rate")


@dataclass
class Settings:
    name: str = option("run", help="run name")
    steps: int | None = option(None, min=1, null="for one epoch", help="optimiser steps")
    mode: str = option("full", choices=("full", "lora"), help="tuning")
    sizes: tuple[int, ...] = option((1, 8), min=1, help="batch sizes")
    weights: dict[str, float] = option(default_factory=dict, min=0, help="per-language weights")
    fast: bool = option(False, help="go fast")
    inner: Inner = option(default_factory=Inner, help="nested")


def test_a_mapping_becomes_typed_settings():
    settings = from_dict(Settings, {"steps": 3, "sizes": [2, 4], "weights": {"de": 1}, "inner": {"rate": "1e-4"}}, "c.yaml")
    assert settings.steps == 3 and settings.sizes == (2, 4) and settings.weights == {"de": 1.0}
    assert settings.inner.rate == 1e-4  # YAML 1.1 reads 1e-4 as text; a float field takes it
    assert to_dict(settings)["sizes"] == [2, 4]


@pytest.mark.parametrize("raw, message", [
    ({"stpes": 3}, "c.yaml: stpes: unknown key (did you mean steps?)"),
    ({"steps": 0}, "c.yaml: steps: must be at least 1 (or null for one epoch), got 0"),
    ({"mode": "half"}, "c.yaml: mode: must be one of full, lora, got 'half'"),
    ({"sizes": [1, 0]}, "c.yaml: sizes[1]: must be at least 1, got 0"),
    ({"weights": {"de": -1}}, "c.yaml: weights.de: must be at least 0, got -1.0"),
    ({"inner": {"rate": 0}}, "c.yaml: inner.rate: must be above 0, got 0.0"),
    ({"steps": "many"}, "c.yaml: steps: expected int or null, got 'many'"),
    ({"fast": 1}, "c.yaml: fast: expected bool, got 1"),
])
def test_bad_values_are_one_line_naming_the_key(raw, message):
    with pytest.raises(LinguaLiftError) as error:
        from_dict(Settings, raw, "c.yaml")
    assert str(error.value) == message


def test_settings_built_in_code_are_checked_the_same_way():
    with pytest.raises(LinguaLiftError, match="code: inner.rate: must be above 0"):
        check(Settings(inner=Inner(rate=-1.0)), "code")


def test_flags_come_from_the_fields_and_errors_name_the_flag():
    parser = argparse.ArgumentParser()
    add_arguments(parser, Settings)
    args = parser.parse_args(["--steps", "5", "--sizes", "1,2", "--fast", "--mode", "lora", "--name", "123"])
    given = overrides_from_args(args, Settings)
    assert given == {"name": "123", "steps": 5, "mode": "lora", "sizes": [1, 2], "fast": True}
    assert from_dict(Settings, given, "").sizes == (1, 2)
    with pytest.raises(LinguaLiftError, match="^--steps: must be at least 1"):
        from_dict(Settings, overrides_from_args(parser.parse_args(["--steps", "0"]), Settings), "")
    assert "optimiser steps" in parser.format_help()


def test_describe_lists_every_setting_with_its_help():
    rows = {key: (kind, default, text) for key, kind, default, text in describe(Settings)}
    assert rows["inner.rate"] == ("float", 1e-3, "learning rate")
    assert rows["steps"][0] == "int or null"


def test_yaml_aliases_are_allowed_within_a_budget():
    from lingualift.schema import YAML_VALUE_BUDGET, load_yaml

    shared = "base: &base {batch_size: 4, max_steps: 2}\nstage1: *base\nstage2: *base\n"
    assert load_yaml(shared, "c.yaml") == {"base": {"batch_size": 4, "max_steps": 2}, "stage1": {"batch_size": 4,
                                           "max_steps": 2}, "stage2": {"batch_size": 4, "max_steps": 2}}
    flat = "[" + ", ".join(["1"] * (YAML_VALUE_BUDGET - 1)) + "]"  # the list itself is one value too
    assert len(load_yaml(flat, "c.yaml")) == YAML_VALUE_BUDGET - 1
    with pytest.raises(LinguaLiftError, match=r"c.yaml:2: this value expands to more than"):
        load_yaml("a: &a [" + ", ".join(["x"] * 400) + "]\nb: [" + ", ".join(["*a"] * 300) + "]\n", "c.yaml")
    with pytest.raises(LinguaLiftError, match="c.yaml: YAML nested too deeply"):
        load_yaml("[" * 100_000 + "]" * 100_000, "c.yaml")


def test_a_language_named_twice_counts_once():
    from lingualift.schema import parse_languages

    assert parse_languages("de, fr,de", "--langs", ["de", "fr"]) == ["de", "fr"]


def test_a_yaml_text_beyond_the_limit_is_refused_before_parsing():
    from lingualift.schema import YAML_TEXT_LIMIT, load_yaml

    with pytest.raises(LinguaLiftError, match="big.yaml: .* characters of YAML"):
        load_yaml("a: " + "x" * YAML_TEXT_LIMIT, "big.yaml")
