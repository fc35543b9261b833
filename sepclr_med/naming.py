"""Safe file names from user-given identifiers (subject ids, score names)."""

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
