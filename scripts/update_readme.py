"""Rewrite the generated docs: README.md's method table and docs/claims.md (the claim record).

Run after registering or moving a method, or after ``gradinfo reproduce ... --record``:
``python scripts/update_readme.py [README.md [docs/claims.md]]``. ``tests/test_readme.py`` fails while either
differs from the registry and the record.
"""

from __future__ import annotations

import sys
from pathlib import Path

from gradinfo.methods import all_methods, claims_markdown, with_method_table

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CLAIMS = ROOT / "docs" / "claims.md"


def _write(path: Path, old: str, new: str, what: str) -> None:
    if new == old:
        print(f"{path} is up to date")
    else:
        path.write_text(new, encoding="utf-8")
        print(f"rewrote {what} in {path}")


def main(readme: Path = README, claims: Path = CLAIMS) -> int:
    text = readme.read_text(encoding="utf-8")
    _write(readme, text, with_method_table(text, all_methods()), "the method table")
    old = claims.read_text(encoding="utf-8") if claims.exists() else ""
    _write(claims, old, claims_markdown(all_methods()), "the claim record")
    return 0


if __name__ == "__main__":
    sys.exit(main(*(Path(a) for a in sys.argv[1:3])))
