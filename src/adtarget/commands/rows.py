"""Row snapshots and their exact reversal: the undo/redo engine of every catalog command.

A catalog command records, per row it touched, a ``RowChange``: the row's columns before and
after (JSON-safe dicts incl. ``version``; ``None`` = the row did not exist). Undo writes
``before`` back, redo writes ``after`` back, both through the catalog's row store
(``catalog/row_store.py``) with the expected version in the WHERE clause, so a row someone
else changed in between is never overwritten (``Conflict`` says which fields moved, between
which versions, and who did it when the ``command_log`` knows).

Versions only ever grow: undo/redo write a new version rather than rewinding it, so a client
holding an old version can never write over the restored row by accident. The price is that
an older command's "the version I left" goes stale when a newer command on the same row is
undone; ``_carry`` moves it along (the row is then exactly in that command's "after"
state again), which is what lets a person undo a chain of edits to one row.

Two refinements of "refuse if the row moved on": a move in ``DERIVED`` columns only (segment
sizes an upload recomputes) does not block, and is not rewound; and the version-less link row
is also refused when a newer command still in effect touched it (``log_scan.newer_changes``),
since "absent, as I left it" may be someone else's attach-then-detach.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

from sqlalchemy.orm import Session

from adtarget.catalog.row_store import (
    is_versioned,
    key_text,
    read_row,
    referrers,
    row_version,
    write_row,
)
from adtarget.commands.log_scan import (
    changes_in,
    deep_copy,
    log_entries,
    newer_changes,
    who_changed,
)
from adtarget.errors import Conflict

if TYPE_CHECKING:
    from adtarget.commands.persisted import CommandContext

#: Columns that record *that* a row changed, not *what* it holds: ignored in diffs.
META = frozenset({"version", "updated_at"})
#: Columns the system recomputes from other data (a segment's size on the current audience
#: snapshot, refreshed by every upload). A later refresh of only these does not block an undo,
#: and undo/redo leave their current values alone unless the command itself changed them:
#: otherwise any upload would make every segment change un-undoable, and an undo would
#: rewind a size to a snapshot that is no longer served.
DERIVED = frozenset({"last_size", "last_snapshot", "last_computed_at"})


def diff(old: dict[str, Any] | None, new: dict[str, Any] | None) -> dict[str, list[Any]]:
    """``{field: [old, new]}`` for every non-meta field that differs."""
    if old is None or new is None:
        return {}
    return {
        k: [old.get(k), new.get(k)]
        for k in sorted(set(old) | set(new))
        if k not in META and old.get(k) != new.get(k)
    }


class RowChangeDict(TypedDict):
    """A ``RowChange`` as stored in ``command_log.payload``."""

    kind: str
    key: dict[str, Any]
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    undone_version: int | None


@dataclass
class RowChange:
    """One row's state before and after a command (``None`` = absent)."""

    kind: str
    key: dict[str, Any]
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    #: The version undo left the row at (``None`` when undo deleted it or never ran).
    undone_version: int | None = None

    def to_dict(self) -> RowChangeDict:
        """JSON form for ``command_log.payload``."""
        return {
            "kind": self.kind,
            "key": self.key,
            "before": self.before,
            "after": self.after,
            "undone_version": self.undone_version,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RowChange:
        """Inverse of ``to_dict``."""
        return cls(d["kind"], dict(d["key"]), d["before"], d["after"], d.get("undone_version"))

    @property
    def label(self) -> str:
        """``line_item 7``."""
        return key_text(self.kind, self.key)


INFLIGHT = "adtarget.commands.inflight"


def set_inflight(session: Session, changes: list[RowChange]) -> None:
    """Declare the RowChanges of the command being undone/redone in this transaction.

    Parts of one composite may touch the same row; when one part's undo moves the row's
    version, the sibling parts (in memory, not yet written back to the log) must follow.
    """
    session.info[INFLIGHT] = changes


def _carry(
    session: Session,
    ch: RowChange,
    old: int | None,
    new: int | None,
    exclude_id: int | None,
    *,
    undo: bool,
) -> None:
    """Keep other commands' expectations of this row in step with a version we just wrote.

    Undo: the command that left the row at ``old`` (= our ``before`` version) now finds its
    state at ``new``. Redo: the undone command whose undo left the row at ``old`` (= our
    ``after`` version) now finds that same state at ``new``.
    """
    if old is None or new is None:
        return

    def matches(kind: str, key: dict[str, Any], after: Any, undone_version: Any) -> bool:
        if kind != ch.kind or key != ch.key:
            return False
        return (row_version(after) == old) if undo else (undone_version == old)

    for other in session.info.get(INFLIGHT, []):
        if other is not ch and matches(other.kind, other.key, other.after, other.undone_version):
            if undo:
                other.after = {**(other.after or {}), "version": new}
            else:
                other.undone_version = new
    for entry in log_entries(session, exclude_id, "done" if undo else "undone"):
        # Edit a copy and assign it: in-place edits of a JSON column are not flushed.
        payload = deep_copy(entry.payload)
        hit = False
        for d in changes_in(payload):
            if matches(d["kind"], d["key"], d["after"], d.get("undone_version")):
                if undo:
                    d["after"] = {**d["after"], "version": new}
                else:
                    d["undone_version"] = new
                hit = True
        if hit:
            entry.payload = payload


def _refuse(
    ch: RowChange,
    verb: str,
    expected: dict[str, Any] | None,
    cur: dict[str, Any] | None,
    ctx: CommandContext,
    description: str,
) -> Conflict:
    """The conflict error for a row that is no longer as this command left it."""
    exp_v, cur_v = row_version(expected), row_version(cur)
    if cur is None:
        what = f"{ch.label} was deleted after this command"
    elif expected is None:
        what = f"{ch.label} exists again; it was re-created after this command"
    elif cur_v is None:
        what = f"{ch.label} was removed and added again after this command"
    else:
        fields = diff(expected, cur)
        changed = ", ".join(f"{k} {v[0]!r} -> {v[1]!r}" for k, v in fields.items()) or "no field"
        what = (
            f"{ch.label} was changed after this command: it is at version {cur_v}, "
            f"not the version {exp_v} this command left; changed: {changed}"
        )
    who = who_changed(ctx.session, ch.kind, ch.key, exp_v, ctx.log_id)
    by = f"; by {'; '.join(who)}" if who else "; not by any command still in the history"
    return Conflict(
        f"cannot {verb} {description!r}: {what}{by}. Nothing was overwritten.",
        field="version",
        row=ch.label,
        expected_version=exp_v,
        current_version=cur_v,
        changed_fields=sorted(diff(expected, cur)),
        changed_by=who or None,
    )


def undo_changes(ctx: CommandContext, changes: list[RowChange], description: str) -> None:
    """Write every change's ``before`` back, newest first, refusing rows that moved on."""
    for ch in reversed(changes):
        cur = read_row(ctx.session, ch.kind, ch.key)
        if not _same_version(cur, ch.after) and not _only_derived_moved(cur, ch.after):
            raise _refuse(ch, "undo", ch.after, cur, ctx, description)
        _refuse_if_touched_since(ctx, ch, "undo", description)
        if ch.before is None:
            blockers = referrers(ctx.session, ch.kind, ch.key)
            if blockers:
                raise Conflict(
                    f"cannot undo {description!r}: {ch.label} is referenced by "
                    f"{', '.join(blockers)} added later; undo or remove those first "
                    "(or archive it instead). Nothing was changed.",
                    field="id",
                    row=ch.label,
                )
        new_v = write_row(ctx.session, ch.kind, ch.key, cur, _keep_derived(ch, ch.before, cur))
        ch.undone_version = new_v
        _carry(ctx.session, ch, row_version(ch.before), new_v, ctx.log_id, undo=True)


def redo_changes(ctx: CommandContext, changes: list[RowChange], description: str) -> None:
    """Write every change's ``after`` back, oldest first, refusing rows that moved on."""
    for ch in changes:
        cur = read_row(ctx.session, ch.kind, ch.key)
        expected = None if ch.before is None else {**ch.before, "version": ch.undone_version}
        if not _same_version(cur, expected) and not _only_derived_moved(cur, expected):
            raise _refuse(ch, "redo", expected, cur, ctx, description)
        _refuse_if_touched_since(ctx, ch, "redo", description)
        old_after_v = row_version(ch.after)
        new_v = write_row(ctx.session, ch.kind, ch.key, cur, _keep_derived(ch, ch.after, cur))
        _carry(ctx.session, ch, old_after_v, new_v, ctx.log_id, undo=False)
        if ch.before is not None and ch.undone_version is not None:
            ch.before = {**ch.before, "version": ch.undone_version}
        if ch.after is not None and new_v is not None:
            ch.after = {**ch.after, "version": new_v}
        ch.undone_version = None


def _same_version(cur: dict[str, Any] | None, expected: dict[str, Any] | None) -> bool:
    """Is the row where the command expects it (present with that version / absent)?

    Rows without a ``version`` (the line-item/creative link) are compared by content, which
    includes their ``created_at``: a link removed and added again by someone else since is a
    different link, and undoing our attach must not delete theirs.
    """
    if cur is None or expected is None:
        return cur is None and expected is None
    if "version" not in cur:
        return not diff(cur, expected)
    return row_version(cur) == row_version(expected)


def _refuse_if_touched_since(
    ctx: CommandContext, ch: RowChange, verb: str, description: str
) -> None:
    """For rows without ``version``: refuse if a newer command still in effect touched it."""
    if is_versioned(ch.kind):
        return
    who = newer_changes(ctx.session, ch.kind, ch.key, ctx.log_id)
    if who:
        raise Conflict(
            f"cannot {verb} {description!r}: {ch.label} was changed again after this command "
            f"(even if it looks the same now) by {'; '.join(who)}; undo that first. "
            "Nothing was overwritten.",
            field="version",
            row=ch.label,
            changed_by=who,
        )


def _only_derived_moved(cur: dict[str, Any] | None, expected: dict[str, Any] | None) -> bool:
    """Did the row move on (a newer version) in ``DERIVED`` columns only?

    Then nothing anyone set would be overwritten, so undo/redo may proceed. A newer version
    with no content change at all is still refused: it was another command's change followed
    by its reversal, whose own undo chain must stay intact.
    """
    if cur is None or expected is None or "version" not in cur:
        return False
    changed = set(diff(expected, cur))
    return bool(changed) and changed <= DERIVED


def _keep_derived(
    ch: RowChange, target: dict[str, Any] | None, cur: dict[str, Any] | None
) -> dict[str, Any] | None:
    """``target`` with the row's current ``DERIVED`` values where the command left them alone."""
    if target is None or cur is None or ch.before is None or ch.after is None:
        return target
    keep = {
        k: cur[k]
        for k in DERIVED
        if k in cur and k in target and ch.before.get(k) == ch.after.get(k)
    }
    return {**target, **keep} if keep else target
