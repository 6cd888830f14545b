"""The catalog's DDL as each backend receives it, for docs/data-model.md and reviews.

Run ``python -m adtarget.catalog.ddl postgresql`` (or ``sqlite``); after a schema change,
``python -m adtarget.catalog.ddl --update-doc docs/data-model.md``. A test checks that the DDL
quoted in docs/data-model.md is still what the models compile to, so the document cannot drift.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.schema import CreateIndex, CreateTable

from adtarget.catalog.tables import Base

DIALECTS: dict[str, Dialect] = {
    "postgresql": postgresql.dialect(),  # type: ignore[no-untyped-call]
    "sqlite": sqlite.dialect(),
}


def statements(dialect_name: str) -> list[str]:
    """``CREATE TABLE`` / ``CREATE INDEX`` statements in dependency order, one per item."""
    dialect = DIALECTS[dialect_name]
    out: list[str] = []
    for table in Base.metadata.sorted_tables:
        out.append(str(CreateTable(table).compile(dialect=dialect)).strip() + ";")
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            out.append(str(CreateIndex(index).compile(dialect=dialect)).strip() + ";")
    return [_tidy(s) for s in out]


def _tidy(statement: str) -> str:
    lines = (line.rstrip().replace("\t", "    ") for line in statement.splitlines())
    return "\n".join(line for line in lines if line.strip())


def render_doc(markdown: str) -> str:
    """``markdown`` with every ``<!-- ddl:<dialect>:begin/end -->`` block refilled."""
    for name in DIALECTS:
        block = "```sql\n" + "\n\n".join(statements(name)) + "\n```\n"
        begin, end = f"<!-- ddl:{name}:begin -->\n", f"<!-- ddl:{name}:end -->"
        pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), flags=re.S)
        markdown = pattern.sub(lambda _m: begin + block + end, markdown)  # noqa: B023
    return markdown


def main(argv: list[str] | None = None) -> int:
    """Print the DDL for a dialect, or ``--update-doc PATH`` to refresh the data-model page."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--update-doc"] and len(args) == 2:
        path = Path(args[1])
        path.write_text(render_doc(path.read_text(encoding="utf-8")), encoding="utf-8")
        return 0
    name = args[0] if args else "postgresql"
    if name not in DIALECTS:
        print(f"unknown dialect {name!r}; one of {', '.join(DIALECTS)}", file=sys.stderr)
        return 2
    print("\n\n".join(statements(name)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
