"""Safe file names from user-given identifiers (subject ids, score names, group labels).

Every name that reaches the file system goes through :func:`safe_name` (or :func:`slug`, which
always adds the hash): nothing a cohort table says can name a path outside the output folder.
"""

from __future__ import annotations

import hashlib
import re


def slug(name: str) -> str:
    """A file-name-safe, collision-free name: readable part plus a short hash of the original.

    ``"../x"`` and ``"<script>"`` never become paths or markup; two ids that differ only in
    unsafe characters still get different names.
    """
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:40].strip("._") or "subject"
    return f"{safe}-{hashlib.sha1(name.encode()).hexdigest()[:6]}"


SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")


def safe_name(name: str) -> str:
    """``name`` itself when it is a plain file name (letters, digits, ``. _ -``, not starting
    with a dot, at most 80 characters), else its :func:`slug`: readable names stay readable."""
    return name if SAFE.fullmatch(name) and ".." not in name else slug(name)
