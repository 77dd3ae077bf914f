from __future__ import annotations

import pytest

from occvla_ros import cli


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in cli.SUBCOMMANDS:
        assert name in out


def test_unknown_subcommand_is_a_clear_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["frobnicate"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_every_subcommand_module_defines_the_interface():
    import importlib

    for name, (module_name, _) in cli.SUBCOMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
            pytest.fail(f"`occvla {name}` points at missing module {module_name}")
        assert callable(module.add_arguments) and callable(module.run), name


def test_doctor_reports_a_complete_environment(capsys):
    assert cli.main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "environment OK" in out
    assert "torch" in out and "rclpy importable" in out
