"""mkdocs hook (mkdocs.yml ``hooks:``) for `make docs`.

1. README sections in docs pages. A line ``<!-- readme: HEADING -->`` in a page is replaced by the body of the
   README.md section whose ``## `` heading starts with HEADING (up to the next ``## `` heading outside a code
   fence). The README stays the one text; a marker that matches no section, or more than one, fails the build,
   and so (a warning, in strict mode) does a README section that no page includes. Links and images the README
   makes to files under ``docs/`` (``](docs/img/x.png)``) are rewritten relative to the page that includes them.
2. Sphinx roles in docstrings. The docstrings name objects as ``:class:`~funnelrank.x.Y```; rendered as
   Markdown that reads ``:class:`` followed by the code. They become the code alone (``Y`` for ``~`` targets),
   linked to the target's API reference entry when the site documents it (an optional mkdocs-autorefs
   reference: no warning when it does not). A paragraph that ends in reST's literal-block ``::`` before a
   code block ends in one colon.
"""

from __future__ import annotations

import html
import logging
import re
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError

MARKER = re.compile(r"^<!-- readme: (.+?) -->[ \t]*$", re.M)
LITERAL_BLOCK = re.compile(r"::</p>(\s*<(?:div class=\"(?:language-\w+ )?highlight|pre))")
LOG = logging.getLogger("mkdocs.hooks.readme")
_included: set[str] = set()
_readme_headings: list[str] = []
README_DOCS_LINK = re.compile(r"\]\(docs/")
ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj|const|py:\w+):<code>(~?)([^<]+)</code>")


def readme_sections(text: str) -> dict[str, str]:
    """README.md's ``## `` sections: heading -> body (without the heading line)."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    fence: str | None = None
    for line in text.splitlines():
        stripped = line.lstrip()
        if fence is None and stripped.startswith(("```", "~~~")):
            fence = stripped[:3]
        elif fence is not None and stripped.startswith(fence):
            fence = None
        elif fence is None and line.startswith("## "):
            current = sections.setdefault(line[3:].strip(), [])
            continue
        if current is not None:
            current.append(line)
    return {heading: "\n".join(lines).strip("\n") + "\n" for heading, lines in sections.items()}


def on_pre_build(config: Any) -> None:
    _included.clear()


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if not MARKER.search(markdown):
        return markdown
    readme = Path(config["config_file_path"]).parent / "README.md"
    sections = readme_sections(readme.read_text(encoding="utf-8"))
    _readme_headings[:] = list(sections)

    def section(match: re.Match[str]) -> str:
        prefix = match.group(1).strip()
        found = [h for h in sections if h.startswith(prefix)]
        if len(found) != 1:
            raise PluginError(f"{page.file.src_path}: '<!-- readme: {prefix} -->' matches {len(found)} README "
                              f"sections ({found}); README headings: {list(sections)}")
        _included.add(found[0])
        to_docs_root = "../" * page.file.src_path.replace("\\", "/").count("/")
        return README_DOCS_LINK.sub(lambda _: "](" + to_docs_root, sections[found[0]])

    return MARKER.sub(section, markdown)


def on_env(env: Any, config: Any, files: Any) -> Any:
    missing = [h for h in _readme_headings if h not in _included]
    if missing:
        LOG.warning("README sections in no docs page (add a '<!-- readme: HEADING -->' page to docs/): %s", missing)
    return env


def on_page_content(content: str, page: Any, config: Any, files: Any) -> str:
    def role(match: re.Match[str]) -> str:
        target = html.unescape(match.group(2)).strip()
        shown = target.rsplit(".", 1)[-1] if match.group(1) else target
        if not target.startswith("funnelrank"):
            return f"<code>{html.escape(shown)}</code>"
        return (f'<autoref identifier="{html.escape(target)}" optional>'
                f"<code>{html.escape(shown)}</code></autoref>")

    return LITERAL_BLOCK.sub(r":</p>\1", ROLE.sub(role, content))
