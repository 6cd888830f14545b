"""Engines, sessions and migrations for the catalog, on SQLite (default) or PostgreSQL.

Why here and not in each caller: the SQLite pragmas (foreign keys, WAL, busy timeout) must be set
on every connection, and the schema must be migrated exactly once even when several processes
(API workers, a CLI run) open the same catalog at the same moment.
"""

from __future__ import annotations

import fcntl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from adtarget.errors import InvalidValue, StoreUnavailable
from adtarget.settings import Settings

if TYPE_CHECKING:
    from alembic.config import Config

#: ``session.info`` key: the minimum audience size of the settings the catalog was opened with.
MIN_AUDIENCE_SIZE = "min_audience_size"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
HEAD_REVISION = "0003"
"""The newest migration's revision (a test checks it against Alembic's own head)."""
SQLITE_BUSY_TIMEOUT_MS = 10_000
#: Any constant works; it only has to be the same in every process migrating one database.
_PG_MIGRATION_LOCK = 7_337_001

_migrated: set[str] = set()
_migrated_lock = threading.Lock()


def normalize_url(url: str) -> str:
    """Pick the installed PostgreSQL driver (psycopg 3) when the URL does not name one."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _sqlite_file(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    db = parsed.database
    if not db or db == ":memory:" or db.startswith("file:"):
        return None
    return Path(db)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``; SQLite connections get foreign keys, WAL and a busy timeout.

    Args:
        url: a SQLAlchemy URL (``sqlite:///path``, ``postgresql://...``).
        **kwargs: passed on to ``sqlalchemy.create_engine``.
    """
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        kwargs.setdefault("pool_pre_ping", True)
        return create_engine(url, **kwargs)

    in_memory = _sqlite_file(url) is None
    if in_memory:
        # One shared connection, or every session would see its own empty database.
        kwargs.setdefault("poolclass", StaticPool)
    kwargs.setdefault("connect_args", {"check_same_thread": False})
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        if not in_memory:
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    return engine


def make_session_factory(
    engine: Engine, *, info: dict[str, Any] | None = None
) -> sessionmaker[Session]:
    """Sessions whose objects stay readable after commit (services return them to callers).

    ``info`` becomes every session's ``session.info``: the catalog opened for a ``Settings``
    carries the values its checks enforce (``MIN_AUDIENCE_SIZE``), so a service applies the
    settings of the app or CLI that opened it, not whatever the process environment says.
    """
    return sessionmaker(bind=engine, expire_on_commit=False, info=dict(info or {}))


def alembic_config(url: str) -> Config:
    """An Alembic config pointing into the installed package (no alembic.ini needed)."""
    from alembic.config import Config  # lazy: ~0.12 s of every CLI start otherwise

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return cfg


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _run_alembic(url: str, revision: str, *, down: bool, engine: Engine | None) -> None:
    from alembic import command as alembic_command

    cfg = alembic_config(url)
    own = engine is None
    eng = engine if engine is not None else make_engine(url)
    try:
        with eng.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Serialize concurrent migrators; released when this transaction ends.
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            cfg.attributes["connection"] = conn
            if down:
                alembic_command.downgrade(cfg, revision)
            else:
                alembic_command.upgrade(cfg, revision)
    finally:
        if own:
            eng.dispose()


def migrate(url: str, *, revision: str = "head", engine: Engine | None = None) -> None:
    """Upgrade the catalog at ``url`` to ``revision`` (idempotent; safe across processes).

    Args:
        url: the catalog URL.
        revision: Alembic target, ``head`` by default.
        engine: reuse this engine (required for in-memory SQLite, else a temporary one is made).
    """
    sqlite_file = _sqlite_file(normalize_url(url))
    if sqlite_file is not None:
        with _file_lock(sqlite_file.with_name(sqlite_file.name + ".migrate.lock")):
            _run_alembic(url, revision, down=False, engine=engine)
    else:
        _run_alembic(url, revision, down=False, engine=engine)


def downgrade(url: str, *, revision: str = "base", engine: Engine | None = None) -> None:
    """Downgrade the catalog at ``url`` to ``revision`` (``base`` drops every catalog table)."""
    _run_alembic(url, revision, down=True, engine=engine)


def open_catalog(settings: Settings) -> sessionmaker[Session]:
    """The session factory of the configured catalog, created and migrated on first use.

    Setup mistakes (a data dir that is a file, a URL scheme we cannot use, a database that does
    not answer) raise one ``AdtargetError`` saying what is wrong and what to do, not a driver
    traceback.
    """
    check_data_dir(settings.data_dir)
    url = normalize_url(settings.resolved_catalog_url)
    try:
        engine = make_engine(url)
    except (ImportError, NoSuchModuleError, ArgumentError) as exc:
        scheme = url.split(":", 1)[0]
        raise InvalidValue(
            f"ADTARGET_CATALOG_URL: cannot use a {scheme!r} database ({exc}); use "
            "sqlite:///PATH or postgresql://USER@HOST/DB (pip install 'adtarget[postgres]')",
            field="ADTARGET_CATALOG_URL",
        ) from None
    path = _sqlite_file(url)
    with _migrated_lock:
        # SQLite files are cached per process; a server database may have been reset under us,
        # and an up-to-date upgrade is a cheap no-op there.
        if path is None or url not in _migrated or not path.exists():
            try:
                if not _at_head(engine):
                    migrate(url, engine=engine)
            except OperationalError as exc:
                reason = str(exc.orig or exc).strip().splitlines()[0]
                raise StoreUnavailable(
                    f"cannot reach the catalog at {make_url(url).render_as_string()}: {reason}. "
                    "Check ADTARGET_CATALOG_URL and that the database is running",
                    field="ADTARGET_CATALOG_URL",
                ) from None
            _migrated.add(url)
    return make_session_factory(engine, info={MIN_AUDIENCE_SIZE: settings.min_audience_size})


def check_data_dir(data_dir: Path) -> None:
    """Create the data dir, or say in one line why it cannot be used."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise InvalidValue(
            f"the data dir {data_dir} is a file, not a directory; point --data-dir "
            "(ADTARGET_DATA_DIR) at a directory",
            field="data_dir",
        ) from None
    except OSError as exc:
        raise InvalidValue(
            f"cannot use the data dir {data_dir}: {exc.strerror}; point --data-dir "
            "(ADTARGET_DATA_DIR) at a writable directory",
            field="data_dir",
        ) from None
    if not data_dir.is_dir():
        raise InvalidValue(
            f"the data dir {data_dir} is not a directory; point --data-dir "
            "(ADTARGET_DATA_DIR) at a directory",
            field="data_dir",
        )


def _at_head(engine: Engine) -> bool:
    """True when the catalog already carries ``HEAD_REVISION`` (one query, no Alembic import).

    Why: every CLI command opens the catalog once; importing and running Alembic only to learn
    that nothing is to do cost ~0.2 s of each. Anything else (no table, another revision, an
    error) goes through ``migrate``, which takes the cross-process lock and decides for real.
    """
    try:
        with engine.connect() as conn:
            found = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    except Exception:  # no catalog yet, or unreadable: let migrate handle it
        return False
    return found == [HEAD_REVISION]
