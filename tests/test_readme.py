"""Every link of the README and the docs points at a file a clone has."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_links_point_at_files_in_the_repository() -> None:
    documents = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    checked = 0
    for document in documents:
        for target in LINK.findall(document.read_text()):
            if re.match(r"^[a-z]+:", target):
                continue  # an address elsewhere, not a file
            assert (document.parent / target).resolve().is_file(), f"{document.name}: {target}"
            checked += 1
    assert checked >= 8
    assert "../shared" not in (ROOT / "README.md").read_text()
