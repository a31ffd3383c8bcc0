"""One error hierarchy: only STNO's errors (and config errors) become one-line messages."""

from __future__ import annotations

import pytest

from stno.cli.common import one_line_errors
from stno.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    DataNotFoundError,
    OutputExistsError,
    STNOError,
)


def fails_with(error):
    @one_line_errors("stno-test")
    def main():
        raise error

    return main


@pytest.mark.parametrize(
    "error",
    [
        ConfigError("space_scale must be >= 1\nmore detail"),
        DataError("video x.mp4 ends early"),
        DataNotFoundError("no such video: x.mp4"),
        CheckpointError("x.ckpt is not a PyTorch checkpoint"),
        OutputExistsError("output out.mp4 already exists"),
    ],
)
def test_stno_errors_are_one_line_with_exit_code_2(error, capsys, monkeypatch):
    monkeypatch.delenv("STNO_TRACEBACK", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        fails_with(error)()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err == f"stno-test: error: {str(error).splitlines()[0]}\n"


@pytest.mark.parametrize(
    "error", [ValueError("a bug"), KeyError("k"), FileNotFoundError(2, "gone"), RuntimeError("x")]
)
def test_other_errors_are_bugs_and_keep_their_traceback(error, monkeypatch):
    monkeypatch.delenv("STNO_TRACEBACK", raising=False)
    with pytest.raises(type(error)):
        fails_with(error)()


def test_stno_errors_are_also_the_builtin_kinds():
    assert issubclass(DataNotFoundError, FileNotFoundError)
    assert issubclass(OutputExistsError, FileExistsError)
    assert all(issubclass(kind, (STNOError, ValueError)) for kind in (ConfigError, DataError))


def test_hydra_config_errors_are_one_line(capsys, monkeypatch):
    from omegaconf.errors import ConfigKeyError

    monkeypatch.delenv("STNO_TRACEBACK", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        fails_with(ConfigKeyError("Key 'nope' is not in struct"))()
    assert exit_info.value.code == 2
    assert "Key 'nope' is not in struct" in capsys.readouterr().err
