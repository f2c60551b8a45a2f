"""The docs are a front door and a set of pages: README stays short, links every page, and
no link in them points at a file or a section that is not there."""
from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import ROOT

PAGES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(page: Path) -> set[str]:
    """GitHub's ids for a page's headings: lower case, punctuation dropped, spaces to '-'."""
    ids = set()
    for line in page.read_text().splitlines():
        if match := re.match(r"^#+ (.*)", line):
            text = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower())
            ids.add(text.replace(" ", "-"))
    return ids


def test_readme_is_short_and_links_every_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 300
    for page in PAGES[1:]:
        assert f"]({page.relative_to(ROOT)})" in readme, f"README does not link {page.name}"


def test_every_relative_link_and_section_exists():
    broken = []
    for page in PAGES:
        for target in LINK.findall(page.read_text()):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            path, _, section = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif section and file.suffix == ".md" and section not in anchors(file):
                broken.append(f"{page.name}: {target} (no such section)")
    assert not broken, "\n".join(broken)
