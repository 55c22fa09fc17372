"""The code blocks of the documentation, so that tests can run them as they are written.

A block fenced with ```python runs without privileges (tests/test_docs.py); one fenced
with ```python root runs as root against real peers (compat/test_docs.py). Each block is
a whole program: it runs alone, in a fresh interpreter, in an empty directory.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTED = [ROOT / "docs" / "api.md", ROOT / "README.md"]
_FENCE = re.compile(r"^```python( root)?\n(.*?)^```\s*$", re.S | re.M)
_HEADING = re.compile(r"^#+ (.*)$", re.M)


def examples(root: bool) -> list[tuple[str, str]]:
    """(id, code) of every block of the given kind: id is file, heading and number."""
    found = []
    for path in DOCUMENTED:
        text = path.read_text()
        for n, match in enumerate(_FENCE.finditer(text), 1):
            if bool(match.group(1)) != root:
                continue
            headings = _HEADING.findall(text[:match.start()])
            where = headings[-1] if headings else "top"
            slug = re.sub(r"[^a-z0-9]+", "-", where.lower()).strip("-")
            found.append((f"{path.name}:{slug}:{n}", match.group(2)))
    return found
