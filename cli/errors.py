"""How the command line reports errors: one clear message, a non-zero exit, no traceback."""

from __future__ import annotations

import functools
from collections.abc import Callable

import typer

STATE = {"debug": False, "verbosity": 0}  # verbosity: -1 quiet (errors only), 0 normal, 1 verbose
USER_ERROR_EXIT = 1


def make_console(stderr: bool = False):
    """The Rich console a command prints to; silent under ``sepclr-med -q`` (errors still print)."""
    from rich.console import Console

    return Console(highlight=False, stderr=stderr, quiet=STATE["verbosity"] < 0)


def set_verbosity(verbosity: int) -> None:
    """``-q`` (-1): only errors (Python warnings ignored); ``-v`` (1): the library's ``logging``
    records down to DEBUG (store placement, device, batch sizing); otherwise WARNING and above.
    Records of the ``sepclr_med`` logger go to stderr through Rich; the root logger is left alone."""
    import logging
    import warnings

    from rich.logging import RichHandler

    STATE["verbosity"] = verbosity
    logger = logging.getLogger("sepclr_med")
    logger.setLevel(logging.ERROR if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.WARNING)
    for handler in [h for h in logger.handlers if getattr(h, "sepclr_cli", False)]:
        logger.removeHandler(handler)
    handler = RichHandler(console=make_console(stderr=True), show_time=False, show_path=False)
    handler.sepclr_cli = True  # type: ignore[attr-defined]  # ours, replaced on the next call
    logger.addHandler(handler)
    if verbosity < 0:
        warnings.simplefilter("ignore")


def _device_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is torch's CUDA out-of-memory error (without importing torch when it is not loaded)."""
    import sys

    torch = sys.modules.get("torch")
    return torch is not None and isinstance(exc, torch.cuda.OutOfMemoryError)


def describe(exc: BaseException) -> str:
    """One line for a user: the project's own message, or what the operating system refused."""
    if isinstance(exc, MemoryError):
        return "out of memory (a smaller --batch-size, --cache disk, or a machine with more memory)"
    if _device_out_of_memory(exc):
        return (
            "out of GPU memory (a smaller --batch-size, --cache disk so that the volumes stay off the GPU, "
            "or --device cpu); torch said: " + str(exc).splitlines()[0][:200]
        )
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
        return f"the system refused a file operation ({exc.strerror or exc}){where}"
    return str(exc)


def user_errors(command: Callable) -> Callable:
    """Turn :class:`sepclr_med.errors.SepclrError`, operating-system failures (``OSError``: full
    disk, read-only folder, permission), ``MemoryError`` and CUDA's out-of-memory error into one
    message and exit code 1.

    With ``sepclr-med --debug`` the traceback is shown instead.
    """

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from sepclr_med.errors import SepclrError

        try:
            return command(*args, **kwargs)
        except Exception as exc:
            ours = isinstance(exc, SepclrError | OSError | MemoryError) or _device_out_of_memory(exc)
            if STATE["debug"] or not ours:
                raise
            from rich.console import Console
            from rich.markup import escape

            Console(stderr=True, highlight=False).print(f"[bold red]Error:[/] {escape(describe(exc))}", soft_wrap=True)
            raise typer.Exit(USER_ERROR_EXIT) from None

    return wrapper
