"""Saved conversations: one SQLite file (``<data_dir>/history.sqlite3``), safe for two processes at once.

The schema is versioned with ``PRAGMA user_version`` and moved forward by :data:`MIGRATIONS`; a file
written by a newer dslocal is refused and left exactly as it is. The journal is WAL with
``synchronous=NORMAL``: every write is one transaction, and a process killed in the middle of a
streaming answer leaves the file intact with the last saved state of that answer (marked partial).
Reads never create the file; the first write creates it (and its folder), readable by its owner only.

Nothing here prints; failures are :class:`~dslocal.errors.DslocalError` values with a hint.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dslocal.chat.events import Message, Stats
from dslocal.errors import DiskError, DslocalError, NotFoundError, UsageError, shown_path

HISTORY_FILE = "history.sqlite3"
FILE_MODE = 0o600
BUSY_TIMEOUT_MS = 10_000
TITLE_LENGTH = 60
ID_BYTES = 4  # 8 hex digits: short to type, and a prefix of a few of them is usually enough
_LIST_HINT = "'dslocal history ls' lists the saved conversations"

# MIGRATIONS[i] takes a database from version i to version i + 1; each runs in one transaction.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE conversations (
            id TEXT PRIMARY KEY NOT NULL,
            title TEXT,
            title_auto INTEGER NOT NULL DEFAULT 0 CHECK (title_auto IN (0, 1)),
            model TEXT NOT NULL,
            backend TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            settings TEXT NOT NULL DEFAULT '{}'
        )""",
        """CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            role TEXT NOT NULL,
            content TEXT NOT NULL DEFAULT '',
            thinking TEXT NOT NULL DEFAULT '',
            partial INTEGER NOT NULL DEFAULT 0 CHECK (partial IN (0, 1)),
            stats TEXT,
            model TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            UNIQUE (conversation_id, seq)
        )""",
        "CREATE INDEX conversations_by_update ON conversations (updated_at)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


class HistoryError(DslocalError):
    """The history file cannot be used: corrupt, from a newer dslocal, busy or not writable."""


def history_path(data_dir: Path) -> Path:
    """Where the history lives: ``<data_dir>/history.sqlite3`` (``data_dir`` from :mod:`dslocal.paths`)."""
    return Path(data_dir) / HISTORY_FILE


@dataclass(frozen=True)
class ConversationSummary:
    id: str
    title: str | None
    model: str
    backend: str
    created_at: str
    updated_at: str
    message_count: int

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "model": self.model, "backend": self.backend,
                "created_at": self.created_at, "updated_at": self.updated_at, "message_count": self.message_count}


@dataclass(frozen=True)
class Conversation:
    """A conversation with its messages in order. ``message_ids`` and ``message_times`` run parallel to
    ``messages`` (the id :meth:`HistoryStore.update_message` takes, and when each was added)."""

    id: str
    title: str | None
    model: str
    backend: str
    created_at: str
    updated_at: str
    settings: dict[str, Any] = field(default_factory=dict, hash=False)
    messages: tuple[Message, ...] = ()
    message_ids: tuple[int, ...] = ()
    message_times: tuple[str, ...] = ()

    def as_dict(self, *, thinking: bool = True) -> dict[str, Any]:
        """A JSON-ready form; ``thinking=False`` empties every message's thinking (the key stays)."""
        return {
            "id": self.id, "title": self.title, "model": self.model, "backend": self.backend,
            "created_at": self.created_at, "updated_at": self.updated_at, "settings": self.settings,
            "messages": [
                {"id": mid, "created_at": when, "role": m.role, "content": m.content,
                 "thinking": m.thinking if thinking else "", "partial": m.partial,
                 "stats": m.stats.as_dict() if m.stats else None, "model": m.model}
                for mid, when, m in zip(self.message_ids, self.message_times, self.messages)
            ],
        }


def now_iso() -> str:
    """The current UTC time as ``2024-05-01T12:00:00.123456Z`` (sorts as text)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def make_title(text: str) -> str | None:
    """A title from a user message: its first non-blank line, spaces collapsed, cut to ~60 characters."""
    for line in text.splitlines():
        line = " ".join(line.split())
        if line:
            if len(line) <= TITLE_LENGTH:
                return line
            cut = line[:TITLE_LENGTH]
            space = cut.rfind(" ")
            if space >= TITLE_LENGTH // 2:
                cut = cut[:space]
            return cut.rstrip(" .,;:-") + "…"
    return None


def _clean_title(title: str | None) -> str | None:
    if title is None:
        return None
    return " ".join(title.split()) or None


def _dump_settings(settings: dict | None) -> str:
    if settings is None:
        return "{}"
    if not isinstance(settings, dict):
        raise TypeError(f"settings must be a dict, not {type(settings).__name__}")
    return json.dumps(settings, ensure_ascii=False, sort_keys=True, allow_nan=False)


def _load_json(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:  # an edited file: show what can be shown
        return None


def _stats_json(stats: Stats | None) -> str | None:
    if stats is None:
        return None
    data = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in stats.as_dict().items()}
    return json.dumps(data, ensure_ascii=False, allow_nan=False)


def _message(row: sqlite3.Row) -> Message:
    stats = _load_json(row["stats"])
    return Message(role=row["role"], content=row["content"], thinking=row["thinking"], partial=bool(row["partial"]),
                   stats=Stats.from_dict(stats) if isinstance(stats, dict) else None, model=row["model"])


class HistoryStore:
    """Conversations in the SQLite file ``path``. One connection, opened on first use; thread-safe.

    Reads of a file that does not exist yet find nothing (and create nothing); the first write creates it.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.RLock()

    # -- the connection ------------------------------------------------------------------------------------

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.close()
                self._conn = None

    def _connection(self, *, create: bool) -> sqlite3.Connection | None:
        """The open connection; None when the file does not exist and ``create`` is false."""
        if self._conn is not None:
            return self._conn
        if not os.path.lexists(self.path):
            if not create:
                return None
            self._create_file()
        self._check_file()
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                               check_same_thread=False)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA foreign_keys = ON")
            # Read first, before anything that could write (the journal mode): a newer file is left as it is.
            self._check_version(conn.execute("PRAGMA user_version").fetchone()[0])
            self._use_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
            self._migrate(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    @staticmethod
    def _use_wal(conn: sqlite3.Connection) -> None:
        """Switch the file to WAL (once: it is kept in the file). The switch needs the file to itself and
        SQLite does not wait for that (no busy handler), so a second process starting at once retries here."""
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                return  # WAL, or a file system without it: the rollback journal is safe too, only slower
            except sqlite3.OperationalError as exc:
                if ("locked" not in str(exc).lower() and "busy" not in str(exc).lower()) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def _create_file(self) -> None:
        from dslocal.errors import from_os_error

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise (from_os_error(exc, self.path.parent) or exc) from exc
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, FILE_MODE)
        except FileExistsError:  # another process made it first
            return
        except OSError as exc:
            raise (from_os_error(exc, self.path) or exc) from exc
        os.close(fd)  # a new file: no connection of this process has locks on it to lose

    def _check_file(self) -> None:
        """Refuse a folder where the file should be. The file itself is never opened here: closing any
        descriptor of it would drop the POSIX locks of every SQLite connection of this process to it."""
        if self.path.is_dir():
            raise HistoryError(f"the chat history {shown_path(self.path)} is a folder, not a file",
                               "move it out of the way; dslocal makes a new history on the next chat")

    def _check_version(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise HistoryError(
                f"the chat history {shown_path(self.path)} has schema version {version}, newer than this dslocal "
                f"understands (up to {SCHEMA_VERSION}); it was left untouched",
                "upgrade dslocal (pip install -U dslocal) to read it, or set DSLOCAL_HOME to use another history")

    def _migrate(self, conn: sqlite3.Connection) -> None:
        if conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]  # another process may have done it
            self._check_version(version)
            for number in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[number]:
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise

    def _corrupt(self, reason: str) -> HistoryError:
        shown = shown_path(self.path)
        return HistoryError(
            f"cannot read the chat history {shown}: {reason}",
            f"move it aside (mv '{shown}' '{shown}.bad'); dslocal makes a new history on the next chat")

    def _sqlite_error(self, exc: sqlite3.Error) -> DslocalError:
        text = str(exc)
        lowered = text.lower()
        shown = shown_path(self.path)
        if "locked" in lowered or "busy" in lowered:
            return HistoryError(f"the chat history {shown} is busy (another dslocal kept it locked)",
                                "try again; if it stays busy, find the dslocal still running")
        if "full" in lowered:
            return DiskError(f"no space left on the device writing {shown}",
                             "free some space (df -h shows where), then try again")
        if "readonly" in lowered or "read-only" in lowered or "permission" in lowered:
            return DiskError(f"not writable: {shown} ({text})",
                             "fix the file's and its folder's permissions, or set DSLOCAL_HOME to use another folder")
        if "unable to open" in lowered:
            return HistoryError(f"cannot open the chat history {shown}: {text}",
                                "check that its folder exists and is writable")
        if isinstance(exc, sqlite3.OperationalError) and "no such" in lowered:
            return self._corrupt(f"its tables are not dslocal's ({text})")
        if isinstance(exc, (sqlite3.OperationalError, sqlite3.IntegrityError, sqlite3.InterfaceError)) and not (
                "malformed" in lowered or "not a database" in lowered or "corrupt" in lowered):
            return HistoryError(f"the chat history {shown} could not be used: {text}",
                                "move it aside to start a new one, or report this with the message above")
        return self._corrupt(text)

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        with self._lock:
            try:
                yield
            except sqlite3.Error as exc:
                raise self._sqlite_error(exc) from exc

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``: it waits for another writer instead of failing later)."""
        with self._guard():
            conn = self._connection(create=True)
            assert conn is not None
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection | None]:
        """One read transaction (a consistent snapshot); None when there is no history file yet."""
        with self._guard():
            conn = self._connection(create=False)
            if conn is None:
                yield None
                return
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("COMMIT")

    # -- writes --------------------------------------------------------------------------------------------

    def new_conversation(self, model: str, backend: str, settings: dict | None = None,
                         title: str | None = None) -> str:
        """Start a conversation and return its id. Without ``title``, the first user message names it."""
        settings_json = _dump_settings(settings)
        title = _clean_title(title)
        when = now_iso()
        with self._write() as conn:
            while True:
                conversation_id = secrets.token_hex(ID_BYTES)
                if conn.execute("SELECT 1 FROM conversations WHERE id = ?", (conversation_id,)).fetchone() is None:
                    break
            conn.execute(
                "INSERT INTO conversations (id, title, title_auto, model, backend, created_at, updated_at, settings)"
                " VALUES (?, ?, 0, ?, ?, ?, ?, ?)",
                (conversation_id, title, model, backend, when, when, settings_json))
        return conversation_id

    def add_message(self, conversation_id: str, message: Message) -> int:
        """Append ``message``; returns its id (for :meth:`update_message`)."""
        stats = _stats_json(message.stats)
        when = now_iso()
        with self._write() as conn:
            self._require(conn, conversation_id)
            seq = conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM messages WHERE conversation_id = ?",
                               (conversation_id,)).fetchone()[0]
            cursor = conn.execute(
                "INSERT INTO messages (conversation_id, seq, role, content, thinking, partial, stats, model,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (conversation_id, seq, message.role, message.content, message.thinking, int(message.partial),
                 stats, message.model, when))
            self._touch(conn, conversation_id, when, message)
            message_id = cursor.lastrowid
        assert message_id is not None
        return message_id

    def update_message(self, message_id: int, message: Message) -> None:
        """Replace a saved message's text, thinking, partial flag, stats and model (a streaming answer as it
        grows: save it partial, then once more complete)."""
        stats = _stats_json(message.stats)
        when = now_iso()
        with self._write() as conn:
            row = conn.execute("SELECT conversation_id FROM messages WHERE id = ?", (message_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"no saved message with id {message_id}", "it may have been deleted")
            conn.execute(
                "UPDATE messages SET role = ?, content = ?, thinking = ?, partial = ?, stats = ?, model = ?"
                " WHERE id = ?",
                (message.role, message.content, message.thinking, int(message.partial), stats, message.model,
                 message_id))
            self._touch(conn, row["conversation_id"], when, message)

    def set_settings(self, conversation_id: str, settings: dict) -> None:
        """Replace the conversation's settings (the options it was asked with)."""
        settings_json = _dump_settings(settings)
        with self._write() as conn:
            self._require(conn, conversation_id)
            conn.execute("UPDATE conversations SET settings = ?, updated_at = ? WHERE id = ?",
                         (settings_json, now_iso(), conversation_id))

    def delete(self, conversation_id: str) -> bool:
        """Delete a conversation and its messages; False when there was none with that id."""
        with self._guard():
            if self._connection(create=False) is None:
                return False
        with self._write() as conn:
            return conn.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,)).rowcount > 0

    def clear_messages(self, conversation_id: str) -> None:
        """Delete the conversation's messages and keep it (``/clear``); a title made from them goes too."""
        with self._write() as conn:
            self._require(conn, conversation_id)
            conn.execute("DELETE FROM messages WHERE conversation_id = ?", (conversation_id,))
            conn.execute("UPDATE conversations SET updated_at = ?,"
                         " title = CASE WHEN title_auto = 1 THEN NULL ELSE title END, title_auto = 0 WHERE id = ?",
                         (now_iso(), conversation_id))

    def _require(self, conn: sqlite3.Connection, conversation_id: str) -> None:
        if conn.execute("SELECT 1 FROM conversations WHERE id = ?", (conversation_id,)).fetchone() is None:
            raise self._not_found(conversation_id)

    def _touch(self, conn: sqlite3.Connection, conversation_id: str, when: str, message: Message) -> None:
        conn.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (when, conversation_id))
        if message.role == "user":
            title = make_title(message.content)
            if title is not None:
                conn.execute("UPDATE conversations SET title = ?, title_auto = 1 WHERE id = ? AND title IS NULL",
                             (title, conversation_id))

    def _not_found(self, conversation_id: str) -> NotFoundError:
        return NotFoundError(f"no saved conversation {conversation_id!r}", _LIST_HINT)

    # -- reads ---------------------------------------------------------------------------------------------

    def get(self, conversation_id: str) -> Conversation:
        """The conversation with exactly this id (see :meth:`resolve` for prefixes)."""
        with self._read() as conn:
            row = None if conn is None else conn.execute(
                "SELECT * FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
            if row is None:
                raise self._not_found(conversation_id)
            assert conn is not None
            rows = conn.execute("SELECT * FROM messages WHERE conversation_id = ? ORDER BY seq",
                                (conversation_id,)).fetchall()
        settings = _load_json(row["settings"])
        return Conversation(
            id=row["id"], title=row["title"], model=row["model"], backend=row["backend"],
            created_at=row["created_at"], updated_at=row["updated_at"],
            settings=settings if isinstance(settings, dict) else {},
            messages=tuple(_message(r) for r in rows), message_ids=tuple(r["id"] for r in rows),
            message_times=tuple(r["created_at"] for r in rows))

    def latest(self) -> Conversation | None:
        """The conversation updated last, or None when there is none."""
        newest = self.list(limit=1)
        return self.get(newest[0].id) if newest else None

    def list(self, limit: int | None = None) -> list[ConversationSummary]:
        """Summaries, the most recently updated first; at most ``limit`` of them."""
        sql = ("SELECT c.id, c.title, c.model, c.backend, c.created_at, c.updated_at,"
               " (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id) AS message_count"
               " FROM conversations c ORDER BY c.updated_at DESC, c.rowid DESC")
        params: tuple = ()
        if limit is not None:
            sql += " LIMIT ?"
            params = (max(int(limit), 0),)
        with self._read() as conn:
            rows = [] if conn is None else conn.execute(sql, params).fetchall()
        return [ConversationSummary(id=r["id"], title=r["title"], model=r["model"], backend=r["backend"],
                                    created_at=r["created_at"], updated_at=r["updated_at"],
                                    message_count=r["message_count"]) for r in rows]

    def resolve(self, prefix: str) -> str:
        """The id that ``prefix`` starts (an exact id always wins); NotFoundError, or UsageError when several do."""
        wanted = prefix.strip().lower()
        if not wanted:
            raise UsageError("an empty conversation id", _LIST_HINT)
        with self._read() as conn:
            rows = [] if conn is None else conn.execute(
                "SELECT id, title FROM conversations WHERE substr(id, 1, ?) = ? ORDER BY updated_at DESC",
                (len(wanted), wanted)).fetchall()
        ids = [r["id"] for r in rows]
        if wanted in ids:
            return wanted
        if len(ids) == 1:
            return ids[0]
        if not ids:
            raise NotFoundError(f"no saved conversation starts with {prefix.strip()!r}", _LIST_HINT)
        shown = ", ".join(f"{r['id']} ({r['title'] or 'untitled'})" for r in rows[:5])
        more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
        raise UsageError(f"{prefix.strip()!r} matches {len(rows)} conversations: {shown}{more}",
                         "give more characters of the id")

    def integrity_check(self) -> str:
        """SQLite's own check of the file: ``"ok"`` when it is intact (and when there is no file yet)."""
        with self._read() as conn:
            if conn is None:
                return "ok"
            return "; ".join(str(r[0]) for r in conn.execute("PRAGMA integrity_check").fetchall())


# -- Markdown ------------------------------------------------------------------------------------------------

_ROLE_HEADINGS = {"user": "User", "assistant": "Assistant", "system": "System"}


def shown_time(iso: str) -> str:
    """``2024-05-01T12:00:00.123456Z`` as ``2024-05-01 12:00 UTC`` (anything else as it is)."""
    match = re.fullmatch(r"(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}).*Z", iso or "")
    return f"{match.group(1)} {match.group(2)} UTC" if match else (iso or "")


def stats_line(stats: Stats | None) -> str:
    """``Thought for 12.3 s · 25.1 tok/s · 412 tokens`` with the figures that are known ("" when none)."""
    return stats.summary() if stats is not None else ""


def export_markdown(conversation: Conversation, *, thinking: bool = True) -> str:
    """The conversation as Markdown: title, model and dates, then each turn under a heading; thinking in a
    collapsed ``<details>`` block (left out with ``thinking=False``), cut-short answers marked."""
    c = conversation
    lines = [f"# {c.title or 'Untitled conversation'}", "",
             f"- Model: {c.model}" + (f" ({c.backend})" if c.backend else ""),
             f"- Started: {shown_time(c.created_at)}", f"- Updated: {shown_time(c.updated_at)}", ""]
    for message in c.messages:
        heading = _ROLE_HEADINGS.get(message.role, message.role.capitalize() or "Message")
        if message.model and message.model != c.model:
            heading += f" ({message.model})"
        lines += [f"## {heading}", ""]
        if thinking and message.thinking.strip():
            text = message.thinking.strip("\n").replace("</details>", "&lt;/details&gt;")
            lines += ["<details><summary>Thinking</summary>", "", text, "", "</details>", ""]
        if message.content.strip():
            lines += [message.content.strip("\n"), ""]
        if message.partial:
            lines += ["*(cut short)*", ""]
        figures = stats_line(message.stats)
        if figures:
            lines += [f"*{figures}*", ""]
    return "\n".join(lines).rstrip("\n") + "\n"
