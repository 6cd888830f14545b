"""``delivery.files.read_batches``: event files in every format, CSV headers read by ``csv``."""

from __future__ import annotations

from pathlib import Path

import pytest

from adtarget.delivery.files import read_batches
from adtarget.errors import InvalidValue


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


def test_a_semicolon_csv_names_the_delimiter_that_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text("event_id;user_id;line_item_id\n007;0042;3\n", encoding="utf-8")
    with pytest.raises(InvalidValue) as err:
        list(read_batches(path))
    assert "use --delimiter ';'" in err.value.message and err.value.field == "delimiter"
    (batch,) = list(read_batches(path, delimiter=";"))
    assert isinstance(batch, dict)
    assert batch["event_id"] == ["007"] and batch["user_id"] == ["0042"]


def test_a_comma_csv_without_event_id_is_left_to_the_row_checks(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text("user_id,line_item_id\nu1,3\n", encoding="utf-8")
    (batch,) = list(read_batches(path))  # rows then fail one by one, naming event_id
    assert isinstance(batch, dict) and batch["user_id"] == ["u1"]
