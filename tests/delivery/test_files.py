"""``delivery.files.read_batches``: event files in every format, CSV headers read by ``csv``."""

from __future__ import annotations

from pathlib import Path

from adtarget.delivery.files import read_batches


def test_csv_header_with_a_quoted_comma_keeps_string_columns_as_text(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text(
        '"event_id","user_id","note, free text",line_item_id\n007,0042,"a, b",3\n',
        encoding="utf-8",
    )
    (batch,) = list(read_batches(path))
    assert isinstance(batch, dict)
    # event_id / user_id are read as strings (leading zeros kept) because the header parsed:
    assert batch["event_id"] == ["007"] and batch["user_id"] == ["0042"]
    assert batch["note, free text"] == ["a, b"]
