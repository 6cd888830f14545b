"""The fast blank-id check agrees with trimming every id (``validate._blank``)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import given, settings
from hypothesis import strategies as st

from adtarget.ingest.validate import _blank

CHARS = st.sampled_from(["a", "Z", "0", " ", "\t", "\n", "\x00", "\x7f", "\u00a0", "\u3000", "é"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(CHARS, max_size=4)), max_size=20), st.integers(0, 3))
def test_blank_matches_trim(values: list[str | None], cut: int) -> None:
    for typ in (pa.string(), pa.large_string()):
        arr = pa.array(values, typ).slice(min(cut, len(values)))  # sliced: offsets rebased
        want = pc.equal(pc.utf8_trim_whitespace(arr), "").fill_null(False).to_pylist()
        assert _blank(arr).tolist() == want
