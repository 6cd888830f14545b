"""docs/data-model.md quotes the real DDL; this keeps it true after every schema change."""

from __future__ import annotations

from pathlib import Path

import pytest

from adtarget.catalog.ddl import main, render_doc, statements
from adtarget.catalog.tables import Base

DOC = Path(__file__).resolve().parents[2] / "docs" / "data-model.md"


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_every_table_and_index_is_emitted(dialect: str) -> None:
    ddl = "\n".join(statements(dialect))
    for table in Base.metadata.tables.values():
        assert f"CREATE TABLE {table.name} (" in ddl
        for index in table.indexes:
            assert f"CREATE INDEX {index.name} " in ddl
    if dialect == "postgresql":
        assert "JSONB" in ddl and "TIMESTAMP WITH TIME ZONE" in ddl
    else:
        assert "AUTOINCREMENT" in ddl


def test_doc_quotes_the_current_ddl() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert render_doc(text) == text, (
        "docs/data-model.md is stale: run python -m adtarget.catalog.ddl --update-doc "
        "docs/data-model.md"
    )
    assert text.lstrip().startswith("# ") and "```mermaid\nerDiagram" in text


def test_cli_prints_ddl(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sqlite"]) == 0
    assert "CREATE TABLE line_items" in capsys.readouterr().out
    assert main(["oracle"]) == 2
