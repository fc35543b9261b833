"""How the command line reports errors: one clear message, a non-zero exit, no traceback."""

from __future__ import annotations

import functools
from collections.abc import Callable

import typer

STATE = {"debug": False}
USER_ERROR_EXIT = 1


def user_errors(command: Callable) -> Callable:
    """Turn :class:`sepclr_med.errors.SepclrError` into a message and exit code 1.

    With ``sepclr-med --debug`` the traceback is shown instead.
    """

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from sepclr_med.errors import SepclrError

        try:
            return command(*args, **kwargs)
        except SepclrError as exc:
            if STATE["debug"]:
                raise
            from rich.console import Console
            from rich.markup import escape

            Console(stderr=True, highlight=False).print(f"[bold red]Error:[/] {escape(str(exc))}",
                                                        soft_wrap=True)
            raise typer.Exit(USER_ERROR_EXIT) from None

    return wrapper
