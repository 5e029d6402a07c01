"""mkdocs hook (mkdocs.yml ``hooks:``) for `make docs`: Sphinx roles in docstrings.

The docstrings name objects as ``:class:`~funnelrank.x.Y```; rendered as Markdown that reads ``:class:``
followed by the code. They become the code alone (``Y`` for ``~`` targets), linked to the target's API
reference entry when the site documents it (an optional mkdocs-autorefs reference: no warning when it does
not). A paragraph that ends in reST's literal-block ``::`` before a code block ends in one colon.
"""

from __future__ import annotations

import html
import re
from typing import Any

LITERAL_BLOCK = re.compile(r"::</p>(\s*<(?:div class=\"(?:language-\w+ )?highlight|pre))")
ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj|const|py:\w+):<code>(~?)([^<]+)</code>")


def on_page_content(content: str, page: Any, config: Any, files: Any) -> str:
    def role(match: re.Match[str]) -> str:
        target = html.unescape(match.group(2)).strip()
        shown = target.rsplit(".", 1)[-1] if match.group(1) else target
        if not target.startswith("funnelrank"):
            return f"<code>{html.escape(shown)}</code>"
        return (f'<autoref identifier="{html.escape(target)}" optional>'
                f"<code>{html.escape(shown)}</code></autoref>")

    return LITERAL_BLOCK.sub(r":</p>\1", ROLE.sub(role, content))
