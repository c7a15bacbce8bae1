"""Every `darknet-py` command is registered explicitly: a module that fails to import breaks
the CLI loudly instead of silently dropping its commands."""
import sys

import pytest

import darknet_py
from darknet_py.cli import build_parser

COMMANDS = {"detect", "info", "partial", "train", "demo", "map", "valid", "anchors", "profile",
            "classifier-train", "classifier-finetune", "classifier-valid", "classifier-predict"}


def _commands(parser):
    action = next(a for a in parser._actions if a.dest == "command")
    return set(action.choices)


def test_every_command_registered():
    assert _commands(build_parser()) == COMMANDS


def test_a_broken_command_module_is_an_error_not_missing_commands(monkeypatch):
    monkeypatch.delattr(darknet_py, "evaluate", raising=False)
    monkeypatch.setitem(sys.modules, "darknet_py.evaluate", None)  # importing it raises ImportError
    with pytest.raises(ImportError):
        build_parser()
