"""mkdocs hooks: list every page of docs/methods/ under "Methods" in the navigation.

Method pages are written by whoever builds a method plugin; listing them here means a new page
appears in the site without anyone editing mkdocs.yml.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _title(page: Path) -> str:
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return page.stem.replace("-", " ").title()


def on_config(config: Any) -> Any:
    methods_dir = Path(config["docs_dir"]) / "methods"
    pages = sorted(p for p in methods_dir.glob("*.md") if p.name != "index.md")
    for item in config["nav"] or []:
        if isinstance(item, dict) and "Methods" in item:
            item["Methods"] = ["methods/index.md"] + [
                {_title(p): f"methods/{p.name}"} for p in pages
            ]
    return config


MARKER = "<!-- method pages -->"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace the marker in methods/index.md with links to the method pages that exist."""
    if page.file.src_uri != "methods/index.md" or MARKER not in markdown:
        return markdown
    methods_dir = Path(config["docs_dir"]) / "methods"
    pages = sorted(p for p in methods_dir.glob("*.md") if p.name != "index.md")
    if not pages:
        listing = "*No method has its own page yet.*"
    else:
        listing = "\n".join(f"- [{_title(p)}]({p.name})" for p in pages)
    return markdown.replace(MARKER, listing)
