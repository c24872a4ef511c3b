"""Bad input gets one line of error, a hint and a named non-zero exit code; never a traceback."""

from __future__ import annotations

import pytest

from dslocal.errors import ExitCode


def assert_clean_error(result, code: ExitCode, *needles: str) -> None:
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2, result.stderr
    assert lines[0].startswith("dslocal: error: ")
    assert lines[1].startswith("hint: ")
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in result.stderr
    assert result.stdout == ""


def test_unknown_command(cli, dslocal_home):
    assert_clean_error(cli("pul"), ExitCode.USAGE, "No such command 'pul'", "dslocal --help")


def test_unknown_flag(cli, dslocal_home):
    assert_clean_error(cli("paths", "--jsn"), ExitCode.USAGE, "--jsn", "dslocal paths --help")


def test_missing_argument(cli, dslocal_home):
    assert_clean_error(cli("config", "set", "connections"), ExitCode.USAGE, "VALUE")


def test_bad_value(cli, dslocal_home):
    assert_clean_error(cli("config", "set", "connections", "many"), ExitCode.CONFIG, "whole number")


def test_unknown_setting(cli, dslocal_home):
    assert_clean_error(cli("config", "set", "modles_dir", "/x"), ExitCode.CONFIG, "modles_dir", "models_dir")


@pytest.mark.parametrize(
    "content, needle",
    [
        (b"models_dir = \n", "not valid TOML"),
        (b"connections = 'four'\n", "whole number"),
        (b"connections = 0\n", "out of range"),
        (b"\xff\xfe\x00", "not UTF-8"),
    ],
)
def test_unreadable_config_file(cli, dslocal_home, content, needle):
    config = dslocal_home / "config" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_bytes(content)
    result = cli("config", "show")
    assert_clean_error(result, ExitCode.CONFIG, needle, str(config))


def test_config_file_that_is_a_directory(cli, dslocal_home, tmp_path):
    folder = tmp_path / "cfg"
    folder.mkdir()
    assert_clean_error(cli("--config", str(folder), "paths"), ExitCode.USAGE, "is a directory")
    assert_clean_error(cli("paths", env={"DSLOCAL_CONFIG": str(folder)}), ExitCode.CONFIG, "is a directory")


def test_bad_environment_value_names_the_variable(cli, dslocal_home):
    result = cli("config", "show", env={"DSLOCAL_CONNECTIONS": "lots"})
    assert_clean_error(result, ExitCode.CONFIG, "DSLOCAL_CONNECTIONS")


def test_debug_shows_the_traceback(cli, dslocal_home):
    config = dslocal_home / "config" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text("connections = 'x'\n")
    result = cli("config", "show", env={"DSLOCAL_DEBUG": "1"})
    assert result.returncode == ExitCode.CONFIG
    assert "Traceback" in result.stderr
    assert result.stderr.strip().splitlines()[-2].startswith("dslocal: error: ")


def test_internal_errors_are_reported_not_dumped(monkeypatch, capsys, dslocal_home):
    import click

    from dslocal.cli.boundary import run

    @click.command()
    def boom() -> None:
        raise RuntimeError("kaboom")

    assert run(boom, []) == ExitCode.INTERNAL
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "dslocal: error: internal error: RuntimeError: kaboom",
        "hint: this is a bug in dslocal; rerun with DSLOCAL_DEBUG=1 and report the traceback",
    ]


def test_interrupt_exits_130(capsys):
    import click

    from dslocal.cli.boundary import run

    @click.command()
    def stop() -> None:
        raise KeyboardInterrupt

    assert run(stop, []) == ExitCode.INTERRUPTED
    assert "interrupted" in capsys.readouterr().err


def test_version_and_help(cli, dslocal_home):
    from dslocal import __version__

    result = cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"dslocal {__version__}"
    result = cli("--help")
    assert result.returncode == 0 and "Examples:" in result.stdout
    bare = cli()
    assert bare.returncode == 0 and bare.stdout == result.stdout


def test_every_command_help_has_examples_or_is_a_leaf_of_one(cli, dslocal_home):
    for args in (["paths"], ["config", "show"], ["config", "set"]):
        result = cli(*args, "--help")
        assert result.returncode == 0
        assert "Examples:" in result.stdout, args
