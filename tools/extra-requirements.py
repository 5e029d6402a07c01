"""Print the requirements of one optional-dependencies extra of pyproject.toml, one a line, for
``pip install -r``: what `make docs` installs without reinstalling (and so rebuilding) the package itself.

    python tools/extra-requirements.py docs > build/docs-requirements.txt
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10: pip's own copy of tomli
    from pip._vendor import tomli as tomllib


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.exit(__doc__)
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    extras = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    if argv[0] not in extras:
        sys.exit(f"pyproject.toml has no extra {argv[0]!r} (extras: {', '.join(sorted(extras))})")
    print("\n".join(extras[argv[0]]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
