"""Every flag of every experiment has a help text (`python -m experiments.NAME --help` says
what each does): the parser each `main` builds is caught before it parses anything."""

from __future__ import annotations

import argparse
import importlib
import pkgutil

import pytest

import experiments

STUDIES = sorted(
    m.name
    for m in pkgutil.iter_modules(experiments.__path__)
    if not m.ispkg and m.name != "benchmark"
)


class _Caught(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser


def parser_of(name: str, monkeypatch: pytest.MonkeyPatch) -> argparse.ArgumentParser:
    def catch(self: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        raise _Caught(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", catch)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", catch)
    module = importlib.import_module(f"experiments.{name}")
    with pytest.raises(_Caught) as caught:
        module.main([])
    return caught.value.parser


def test_the_studies_are_found() -> None:
    assert {"gradient_flow", "depth_scales", "training", "rnn_gradient_flow"} <= set(STUDIES)


@pytest.mark.parametrize("name", STUDIES)
def test_every_flag_has_help(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    parser = parser_of(name, monkeypatch)
    flags = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    assert flags, name
    silent = [a.option_strings[-1] for a in flags if not a.help or a.help == argparse.SUPPRESS]
    assert silent == [], f"experiments.{name}: flags without help: {silent}"


def test_the_check_can_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int)
    flags = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    assert [a.option_strings[-1] for a in flags if not a.help] == ["--jobs"]
