"""The quarantine file: every rejected row with its line number, field and reason.

Why a file and not a log line: people fix rejected rows in bulk (open it in a spreadsheet, fix,
re-upload), so each row keeps its original text. CSV for CSV uploads, JSON Lines otherwise.
The file is created only when the first bad row arrives, so a clean upload leaves none.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import orjson

from adtarget.ingest.validate import Reject

FIELDS = ("line", "field", "reason", "row")


class QuarantineWriter:
    """Appends rejects to ``path`` (``.csv`` or ``.jsonl``) and counts them by reason."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self.by_field: Counter[str] = Counter()
        self._fh: IO[str] | None = None
        self._csv: Any = None

    def write(self, rejects: Iterable[Reject]) -> None:
        """Append rejected rows (opening the file on the first one)."""
        for r in rejects:
            if self._fh is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fh = self.path.open("w", encoding="utf-8", newline="")
                if self.path.suffix == ".csv":
                    self._csv = csv.writer(self._fh)
                    self._csv.writerow(FIELDS)
            if self._csv is not None:
                self._csv.writerow((r.line, r.field or "", r.reason, r.raw))
            else:
                rec = {"line": r.line, "field": r.field, "reason": r.reason, "row": r.raw}
                self._fh.write(orjson.dumps(rec).decode() + "\n")
            self.count += 1
            self.by_field[r.field or "(row)"] += 1

    def close(self) -> None:
        """Flush and close; safe to call twice."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    @property
    def written(self) -> bool:
        """Whether any row was quarantined (so the file exists)."""
        return self.count > 0


def read_quarantine(path: Path) -> list[dict[str, Any]]:
    """Rows of a quarantine file as dicts: ``line`` (int), ``field``, ``reason``, ``row``."""
    if path.suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
        for row in rows:
            row["line"] = int(row["line"])
            row["field"] = row["field"] or None
        return rows
    with path.open(encoding="utf-8") as fh:
        return [orjson.loads(line) for line in fh if line.strip()]
