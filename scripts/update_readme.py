"""Rewrite the method table in README.md (between <!-- methods:start --> and <!-- methods:end -->).

Run after registering or moving a method: ``python scripts/update_readme.py [README.md]``.
``tests/test_readme.py`` fails while the README's table differs from the registry.
"""

from __future__ import annotations

import sys
from pathlib import Path

from gradinfo.methods import all_methods, with_method_table

README = Path(__file__).resolve().parent.parent / "README.md"


def main(path: Path = README) -> int:
    text = path.read_text(encoding="utf-8")
    new = with_method_table(text, all_methods())
    if new == text:
        print(f"{path} is up to date")
    else:
        path.write_text(new, encoding="utf-8")
        print(f"rewrote the method table in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else README))
