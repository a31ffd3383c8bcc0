"""What the entry points share: STNO errors (`stno.errors`) as one line and exit code 2."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from stno.errors import STNOError
from stno.io.configs import config_dir

USER_ERROR_EXIT_CODE = 2

# `stno-eval` / `stno-infer` take the model preset as `preset=`; `model=` (the name `stno-train`
# uses for its model config group) is accepted for it too.
PRESET_ALIAS = {"model": "preset"}

F = TypeVar("F", bound=Callable)


def user_error_types() -> tuple[type[BaseException], ...]:
    """What an entry point shows as one line: STNO's own errors, and the config errors of Hydra,
    OmegaConf and Lightning (an unknown override, a missing value, `trainer=gpu` without a GPU).
    Anything else is a bug: it keeps its traceback."""
    return (STNOError, *_hydra_config_errors())


def _hydra_config_errors() -> tuple[type[BaseException], ...]:
    """Config and setup errors of Hydra, OmegaConf and Lightning (e.g. `trainer=gpu` without a GPU)."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException
    from pytorch_lightning.utilities.exceptions import MisconfigurationException

    return (HydraException, OmegaConfBaseException, MisconfigurationException)


def first_line(error: BaseException) -> str:
    """The error's message on one line (the first non-empty line, or its type name).

    An error re-raised from a DataLoader worker carries the worker's traceback in its message:
    its own message is the last line. A missing mandatory config value names its key.
    """
    from omegaconf.errors import MissingMandatoryValue

    if isinstance(error, MissingMandatoryValue) and getattr(error, "full_key", None):
        return f"{error.full_key}= is required: give it on the command line ({error.full_key}=...)"
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("Caught ") and "Original Traceback" in lines[1]:
        last = lines[-1]
        name, _, message = last.partition(": ")
        return message if message and " " not in name else last
    return lines[0] if lines else type(error).__name__


def one_line_errors(program: str) -> Callable[[F], F]:
    """Decorate a `main()`: user errors print `program: error: message` and exit with code 2.

    Hydra's own config errors (unknown override, missing config) count as user errors too.
    Set `STNO_TRACEBACK=1` to see the full traceback instead.
    """

    def decorate(main: F) -> F:
        @functools.wraps(main)
        def wrapper(*args, **kwargs):
            if os.environ.get("STNO_TRACEBACK"):
                return main(*args, **kwargs)
            try:
                return main(*args, **kwargs)
            except KeyboardInterrupt:
                print(f"{program}: interrupted", file=sys.stderr)
                sys.exit(130)
            except user_error_types() as error:
                cause = root_cause(error)
                print(f"{program}: error: {first_line(cause)}", file=sys.stderr)
                sys.exit(USER_ERROR_EXIT_CODE)

        return wrapper  # type: ignore[return-value]

    return decorate


def root_cause(error: BaseException) -> BaseException:
    """The user error behind Hydra's wrapping (InstantiationException and friends).

    Only Hydra's and OmegaConf's wrappers are looked through: an error of ours (a DataError
    raised from PyAV's error, say) already says what went wrong, its cause would not.
    """
    from hydra.errors import HydraException
    from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

    wrappers = (HydraException, OmegaConfBaseException)
    seen = set()
    current = error
    while id(current) not in seen and isinstance(current, wrappers):
        if isinstance(current, MissingMandatoryValue):
            break
        seen.add(id(current))
        inner = current.__cause__ or current.__context__
        if inner is None or not isinstance(inner, user_error_types()):
            break
        current = inner
    return current


def hydra_entry(
    config_name: str, task: Callable[[Any], Any], aliases: dict[str, str] | None = None
) -> Any:
    """Run ``task`` as a Hydra app on ``conf/<config_name>.yaml``.

    ``aliases``: command-line keys accepted under another name (``{"model": "preset"}`` lets
    `stno-eval model=bicubic_blend` mean `preset=bicubic_blend`).
    """
    import hydra

    for index, argument in enumerate(sys.argv[1:], start=1):
        key, sep, value = argument.partition("=")
        if sep and key in (aliases or {}):
            sys.argv[index] = f"{aliases[key]}={value}"
    app = hydra.main(version_base="1.3", config_path=str(config_dir()), config_name=config_name)
    return app(task)()
