"""The ``sepclr-med`` command line: a thin Typer layer over the library."""
