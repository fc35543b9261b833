"""How the command line reports errors: one clear message, a non-zero exit, no traceback."""

from __future__ import annotations

import functools
from collections.abc import Callable

import typer

STATE = {"debug": False}
USER_ERROR_EXIT = 1


def describe(exc: BaseException) -> str:
    """One line for a user: the project's own message, or what the operating system refused."""
    if isinstance(exc, MemoryError):
        return "out of memory (a smaller --batch-size, --cache disk, or a machine with more memory)"
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
        return f"the system refused a file operation ({exc.strerror or exc}){where}"
    return str(exc)


def user_errors(command: Callable) -> Callable:
    """Turn :class:`sepclr_med.errors.SepclrError`, operating-system failures (``OSError``: full
    disk, read-only folder, permission) and ``MemoryError`` into one message and exit code 1.

    With ``sepclr-med --debug`` the traceback is shown instead.
    """

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from sepclr_med.errors import SepclrError

        try:
            return command(*args, **kwargs)
        except (SepclrError, OSError, MemoryError) as exc:
            if STATE["debug"]:
                raise
            from rich.console import Console
            from rich.markup import escape

            Console(stderr=True, highlight=False).print(f"[bold red]Error:[/] {escape(describe(exc))}", soft_wrap=True)
            raise typer.Exit(USER_ERROR_EXIT) from None

    return wrapper
