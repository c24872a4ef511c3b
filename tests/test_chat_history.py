"""The chat history: real SQLite files, real concurrent and killed processes, and the ``history`` commands."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from test_cli_boundary import assert_one_line_error, invoke

from dslocal.chat import history
from dslocal.chat.events import Message, Stats
from dslocal.chat.history import (
    SCHEMA_VERSION,
    Conversation,
    HistoryError,
    HistoryStore,
    export_markdown,
    history_path,
    make_title,
)
from dslocal.cli.boundary import run
from dslocal.cli.main import cli
from dslocal.errors import ExitCode, InputError, NotFoundError, UsageError

STATS = Stats(prompt_tokens=30, answer_tokens=412, prompt_seconds=0.5, decode_seconds=412 / 25.1,
              first_token_seconds=0.8, thinking_seconds=12.3, total_seconds=17.0, source="backend")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "data" / "history.sqlite3"


@pytest.fixture
def store(db: Path):
    with HistoryStore(db) as opened:
        yield opened


def sample(store: HistoryStore, *, title: str | None = None) -> str:
    cid = store.new_conversation("deepseek-r1:7b", "ollama", {"think": True, "temperature": 0.6}, title=title)
    store.add_message(cid, Message("system", "Be brief."))
    store.add_message(cid, Message("user", "Why is the sky blue?\nAnswer in one line."))
    store.add_message(cid, Message("assistant", "Rayleigh scattering.", thinking="Short wavelengths scatter more.",
                                   stats=STATS, model="deepseek-r1:7b"))
    store.add_message(cid, Message("user", "And sunsets?"))
    store.add_message(cid, Message("assistant", "Longer paths", thinking="The light crosses more air", partial=True,
                                   model="deepseek-r1:14b"))
    return cid


def raw(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(db)


# -- the store -----------------------------------------------------------------------------------------------


def test_round_trip_keeps_thinking_partial_answers_stats_and_settings(store: HistoryStore, db: Path):
    cid = sample(store)
    store.close()
    again = HistoryStore(db).get(cid)
    assert isinstance(again, Conversation)
    assert again.id == cid and len(cid) == 8 and int(cid, 16) >= 0
    assert (again.model, again.backend) == ("deepseek-r1:7b", "ollama")
    assert again.settings == {"think": True, "temperature": 0.6}
    assert again.title == "Why is the sky blue?"  # the first user message's first line
    assert [m.role for m in again.messages] == ["system", "user", "assistant", "user", "assistant"]
    assert again.messages[2] == Message("assistant", "Rayleigh scattering.", thinking="Short wavelengths scatter more.",
                                        stats=STATS, model="deepseek-r1:7b")
    assert again.messages[2].stats.decode_tps == pytest.approx(25.1)
    assert again.messages[4].partial is True and again.messages[4].stats is None
    assert again.messages[4].thinking == "The light crosses more air"
    assert len(again.message_ids) == len(again.message_times) == 5
    assert again.created_at.endswith("Z") and again.created_at <= again.updated_at
    doc = again.as_dict()
    json.dumps(doc)
    assert doc["messages"][2]["stats"]["answer_tokens"] == 412
    assert again.as_dict(thinking=False)["messages"][2]["thinking"] == ""


def test_reads_create_nothing_and_the_first_write_creates_a_private_file(tmp_path: Path):
    db = tmp_path / "deep" / "er" / "history.sqlite3"
    store = HistoryStore(db)
    assert store.list() == [] and store.latest() is None and store.integrity_check() == "ok"
    assert store.delete("abcd1234") is False
    with pytest.raises(NotFoundError):
        store.get("abcd1234")
    with pytest.raises(NotFoundError) as missing:
        store.resolve("ab")
    assert "history ls" in missing.value.hint
    assert not (tmp_path / "deep").exists()
    store.new_conversation("m", "ollama")
    assert (db.stat().st_mode & 0o777) == 0o600
    with raw(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 1
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.execute("PRAGMA foreign_keys = ON")
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    store.close()


def test_an_empty_file_from_an_interrupted_first_write_becomes_a_new_history(db: Path):
    db.parent.mkdir(parents=True)
    db.touch()
    with HistoryStore(db) as store:
        assert store.list() == []
        store.new_conversation("m", "ollama")
        assert len(store.list()) == 1


def test_titles_come_from_the_first_user_message_never_from_thinking(store: HistoryStore):
    cid = store.new_conversation("m", "ollama")
    store.add_message(cid, Message("system", "You are terse."))
    store.add_message(cid, Message("assistant", "", thinking="a title from thinking would be wrong"))
    assert store.get(cid).title is None
    store.add_message(cid, Message("user", "\n   \n  " + "word " * 40, thinking="not this"))
    title = store.get(cid).title
    assert title.startswith("word word") and title.endswith("…") and len(title) <= 61
    store.add_message(cid, Message("user", "a later question"))
    assert store.get(cid).title == title
    assert make_title("x" * 100) == "x" * 60 + "…"
    assert make_title("  \n ") is None

    named = store.new_conversation("m", "ollama", title="  My\nchat ")
    store.add_message(named, Message("user", "hello"))
    assert store.get(named).title == "My chat"
    store.clear_messages(named)
    assert store.get(named).title == "My chat" and store.get(named).messages == ()
    store.clear_messages(cid)  # the title made from the cleared messages goes with them
    assert store.get(cid).title is None and store.get(cid).messages == ()
    store.add_message(cid, Message("user", "fresh start"))
    assert store.get(cid).title == "fresh start"


def test_a_streaming_answer_is_saved_as_it_grows(store: HistoryStore):
    cid = store.new_conversation("m", "ollama")
    store.add_message(cid, Message("user", "count"))
    mid = store.add_message(cid, Message("assistant", "", partial=True))
    assert store.get(cid).messages[-1] == Message("assistant", "", partial=True)
    for n in range(1, 6):
        store.update_message(mid, Message("assistant", " ".join(map(str, range(n))), thinking="t" * n, partial=True))
    assert store.get(cid).messages[-1].content == "0 1 2 3 4" and store.get(cid).messages[-1].partial
    store.update_message(mid, Message("assistant", "0 1 2 3 4 5", thinking="tttttt", stats=STATS, model="m"))
    final = store.get(cid)
    assert final.messages[-1] == Message("assistant", "0 1 2 3 4 5", thinking="tttttt", stats=STATS, model="m")
    assert final.message_ids[-1] == mid and len(final.messages) == 2
    with pytest.raises(NotFoundError):
        store.update_message(mid + 100, Message("assistant", "x"))
    with pytest.raises(NotFoundError):
        store.add_message("nope", Message("user", "x"))


def test_list_is_newest_first_with_counts_and_a_limit(store: HistoryStore):
    ids = []
    for n in range(4):
        cid = store.new_conversation(f"model-{n}", "ollama")
        store.add_message(cid, Message("user", f"question {n}"))
        ids.append(cid)
    assert [s.id for s in store.list()] == ids[::-1]
    store.add_message(ids[1], Message("assistant", "answer"))  # activity moves it to the front
    summaries = store.list()
    assert [s.id for s in summaries] == [ids[1], ids[3], ids[2], ids[0]]
    assert summaries[0].message_count == 2 and summaries[1].message_count == 1
    assert summaries[0].title == "question 1" and summaries[0].model == "model-1"
    assert set(summaries[0].as_dict()) == {"id", "title", "model", "backend", "created_at", "updated_at",
                                           "message_count"}
    assert [s.id for s in store.list(limit=2)] == [ids[1], ids[3]]
    assert store.latest().id == ids[1]
    store.set_settings(ids[0], {"num_ctx": 8192})
    assert store.latest().id == ids[0] and store.latest().settings == {"num_ctx": 8192}


def test_prefixes_resolve_when_unique_and_are_refused_when_ambiguous(store: HistoryStore, monkeypatch):
    fresh = iter(["abc12345", "abc12345", "abc99999", "f0000000"])  # the second one collides: a new one is drawn
    monkeypatch.setattr(history, "secrets", SimpleNamespace(token_hex=lambda _n: next(fresh)))
    first = store.new_conversation("m", "ollama", title="first")
    second = store.new_conversation("m", "ollama", title="second")
    third = store.new_conversation("m", "ollama")
    assert (first, second, third) == ("abc12345", "abc99999", "f0000000")
    assert store.resolve("abc1") == first and store.resolve(" ABC9 ") == second and store.resolve("f") == third
    assert store.resolve("abc12345") == first
    with pytest.raises(UsageError) as ambiguous:
        store.resolve("abc")
    assert "abc12345 (first)" in ambiguous.value.message and "abc99999 (second)" in ambiguous.value.message
    assert "more characters" in ambiguous.value.hint
    with pytest.raises(NotFoundError):
        store.resolve("abd")
    with pytest.raises(NotFoundError):
        store.resolve("%")  # no pattern characters: a prefix is text
    with pytest.raises(UsageError):
        store.resolve("  ")


def test_delete_takes_the_messages_with_it(store: HistoryStore, db: Path):
    keep, gone = sample(store), sample(store)
    assert store.delete(gone) is True and store.delete(gone) is False
    assert [s.id for s in store.list()] == [keep]
    with raw(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM messages WHERE conversation_id = ?", (gone,)).fetchone()[0] == 0
        assert conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 5


@pytest.mark.parametrize("journal", ["delete", "wal"])
def test_a_history_from_a_newer_dslocal_is_refused_and_left_untouched(db: Path, journal: str):
    db.parent.mkdir(parents=True)
    with raw(db) as conn:
        conn.execute(f"PRAGMA journal_mode = {journal}")
        conn.execute("CREATE TABLE conversations (id TEXT, future TEXT)")
        conn.execute("INSERT INTO conversations VALUES ('abcd1234', 'from the future')")
        conn.execute("PRAGMA user_version = 7")
    conn.close()
    before = db.read_bytes()
    listing = sorted(os.listdir(db.parent))
    mtime = db.stat().st_mtime_ns
    store = HistoryStore(db)
    for attempt in (store.list, store.latest, lambda: store.new_conversation("m", "ollama"),
                    lambda: store.add_message("abcd1234", Message("user", "x")), lambda: store.delete("abcd1234")):
        with pytest.raises(HistoryError) as refused:
            attempt()
        assert "schema version 7" in refused.value.message and str(db) in refused.value.message
        assert "upgrade dslocal" in refused.value.hint
    assert db.read_bytes() == before and db.stat().st_mtime_ns == mtime
    assert sorted(os.listdir(db.parent)) == listing  # not even a -wal or -shm file beside it


def test_a_corrupt_file_is_an_error_with_the_path_and_a_hint(db: Path):
    db.parent.mkdir(parents=True)
    db.write_bytes(b"this is not a database at all\n" * 20)
    with pytest.raises(HistoryError) as bad:
        HistoryStore(db).list()
    assert str(db) in bad.value.message and "move it aside" in bad.value.hint

    # A real database whose pages were overwritten: the damage is found by SQLite on reading.
    damaged = db.parent / "damaged.sqlite3"
    with HistoryStore(damaged) as store:
        for n in range(40):
            cid = store.new_conversation("m", "ollama")
            store.add_message(cid, Message("user", f"question {n} " + "x" * 3000))
    data = bytearray(damaged.read_bytes())
    assert len(data) > 8 * 4096
    data[4096:len(data) - 4096] = os.urandom(len(data) - 8192)
    damaged.write_bytes(bytes(data))
    with pytest.raises(HistoryError) as broken, HistoryStore(damaged) as store:
        for summary in store.list():
            store.get(summary.id)
    assert str(damaged) in broken.value.message and "move it aside" in broken.value.hint


def test_a_folder_where_the_file_should_be_is_an_error(db: Path):
    db.mkdir(parents=True)
    with pytest.raises(HistoryError) as bad:
        HistoryStore(db).list()
    assert "is a folder" in bad.value.message
    blocked = db.parent.parent / "blocked"
    blocked.write_text("a file where the data folder should be")
    with pytest.raises(InputError) as in_the_way:
        HistoryStore(blocked / "history.sqlite3").new_conversation("m", "ollama")
    assert "not a folder" in in_the_way.value.message and in_the_way.value.hint


def test_export_markdown():
    store_free = Conversation(
        id="abc12345", title="Why is the sky blue?", model="deepseek-r1:7b", backend="ollama",
        created_at="2024-05-01T12:00:00.000000Z", updated_at="2024-05-01T12:30:59.000000Z",
        messages=(Message("user", "Why is the sky blue?"),
                  Message("assistant", "Rayleigh scattering.", thinking="Short waves </details> scatter.",
                          stats=STATS),
                  Message("user", "And sunsets?"),
                  Message("assistant", "Longer", thinking="more air", partial=True, model="deepseek-r1:14b")),
        message_ids=(1, 2, 3, 4), message_times=("",) * 4)
    text = export_markdown(store_free)
    assert text.startswith("# Why is the sky blue?\n\n- Model: deepseek-r1:7b (ollama)\n"
                           "- Started: 2024-05-01 12:00 UTC\n- Updated: 2024-05-01 12:30 UTC\n")
    assert text.count("## User") == 2 and text.count("## Assistant") == 2
    assert "## Assistant (deepseek-r1:14b)" in text
    assert "<details><summary>Thinking</summary>\n\nShort waves &lt;/details&gt; scatter.\n\n</details>" in text
    assert text.index("Short waves") < text.index("Rayleigh scattering.")
    assert "*Thought for 12.3 s · 25.1 tok/s · 412 tokens*" in text
    assert text.count("(cut short)") == 1 and text.index("Longer") < text.index("(cut short)")
    plain = export_markdown(store_free, thinking=False)
    assert "Thinking" not in plain and "Short waves" not in plain and "more air" not in plain
    assert "Rayleigh scattering." in plain
    untitled = export_markdown(Conversation("f", None, "m", "ollama", "x", "y"))
    assert untitled.startswith("# Untitled conversation\n")


# -- real processes ------------------------------------------------------------------------------------------

WRITER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from dslocal.chat.events import Message
    from dslocal.chat.history import HistoryStore
    db, name, go = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    while not go.exists():
        time.sleep(0.005)
    store = HistoryStore(db)
    for n in range(25):
        cid = store.new_conversation("m", name)
        store.add_message(cid, Message("user", f"{name} {n}"))
        mid = store.add_message(cid, Message("assistant", "", partial=True))
        for k in range(4):
            store.update_message(mid, Message("assistant", "x" * k, partial=True))
        store.update_message(mid, Message("assistant", "done"))
    store.close()
""")


def test_two_processes_write_at_once(db: Path, tmp_path: Path):
    go = tmp_path / "go"
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(db), name, str(go)], stderr=subprocess.PIPE,
                                text=True) for name in ("alpha", "beta")]
    time.sleep(0.3)
    go.touch()  # both start together, on a history that does not exist yet
    for writer in writers:
        _, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err
    with HistoryStore(db) as store:
        assert store.integrity_check() == "ok"
        summaries = store.list()
        assert len(summaries) == 50 and all(s.message_count == 2 for s in summaries)
        assert sorted(s.title for s in summaries) == sorted(f"{name} {n}" for name in ("alpha", "beta")
                                                             for n in range(25))
        for summary in summaries:
            assert store.get(summary.id).messages[-1] == Message("assistant", "done")


STREAMER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from dslocal.chat.events import Message
    from dslocal.chat.history import HistoryStore
    store = HistoryStore(Path(sys.argv[1]))
    cid = store.new_conversation("m", "ollama")
    store.add_message(cid, Message("user", "write forever"))
    mid = store.add_message(cid, Message("assistant", "", partial=True))
    n = 0
    while True:
        n += 1
        store.update_message(mid, Message("assistant", "word " * n, thinking="hmm " * n, partial=True))
        print(n, flush=True)
""")


def test_a_process_killed_mid_answer_leaves_the_history_intact(db: Path):
    streamer = subprocess.Popen([sys.executable, "-c", STREAMER, str(db)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    saved = 0
    try:
        assert streamer.stdout is not None
        while saved < 200:
            line = streamer.stdout.readline()
            assert line, streamer.stderr.read() if streamer.stderr else "the streamer ended"
            saved = int(line)
    finally:
        os.kill(streamer.pid, signal.SIGKILL)
        streamer.wait(timeout=30)
    assert streamer.returncode == -signal.SIGKILL
    with raw(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    with HistoryStore(db) as store:
        assert store.integrity_check() == "ok"
        conversation = store.latest()
        answer = conversation.messages[-1]
        assert answer.partial is True and answer.role == "assistant"
        words = answer.content.count("word ")
        assert words >= saved and answer.content == "word " * words and answer.thinking == "hmm " * words
        store.update_message(conversation.message_ids[-1], Message("assistant", "resumed"))  # still writable
        assert store.get(conversation.id).messages[-1] == Message("assistant", "resumed")


DELETER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from dslocal.chat.history import HistoryStore
    with HistoryStore(Path(sys.argv[1])) as store:
        store.list()
    with HistoryStore(Path(sys.argv[1])) as store:
        assert store.delete(sys.argv[2])
""")


def test_two_stores_in_one_process_and_another_process_stay_consistent(db: Path):
    """Closing one store must not drop the other's locks (POSIX locks belong to the process, and closing any
    descriptor of the file drops them all): another process would then checkpoint under the first one."""
    first = HistoryStore(db)
    keep, gone = first.new_conversation("m", "ollama"), first.new_conversation("m", "ollama")
    assert len(first.list()) == 2
    for _ in range(2):
        with HistoryStore(db) as second:
            assert len(second.list()) == 2
    subprocess.run([sys.executable, "-c", DELETER, str(db), gone], check=True, timeout=60)
    assert [s.id for s in first.list()] == [keep]
    with pytest.raises(NotFoundError):
        first.get(gone)
    with pytest.raises(NotFoundError):
        first.resolve(gone)
    assert first.integrity_check() == "ok"
    first.close()


# -- the commands --------------------------------------------------------------------------------------------


@pytest.fixture
def home_store(dslocal_home: Path):
    with HistoryStore(history_path(dslocal_home / "data")) as opened:
        yield opened


def run_tty(*args: str, answer: str, monkeypatch) -> tuple[int, str, str]:
    """``dslocal ARGS`` in-process, as if stdin were a terminal that types ``answer``."""
    from dslocal.cli import history_cmd

    monkeypatch.setattr(history_cmd, "_stdin_is_tty", lambda: True)
    runner = CliRunner()
    with runner.isolation(input=answer) as (out, err, _):
        code = run(cli, list(args))
        sys.stdout.flush()
        sys.stderr.flush()
    return int(code), out.getvalue().decode(), err.getvalue().decode()


def test_history_ls(cli, dslocal_home: Path):
    empty = cli("history", "ls")
    assert empty.returncode == 0 and empty.stdout == "no saved conversations\n"
    assert not (dslocal_home / "data" / "history.sqlite3").exists()
    with HistoryStore(history_path(dslocal_home / "data")) as store:
        cid = sample(store)
        other = store.new_conversation("deepseek-v3", "openai")
    listed = cli("history", "ls")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["ID", "UPDATED", "MSGS", "MODEL", "TITLE"]
    assert lines[1].startswith(other) and "(untitled)" in lines[1]
    assert lines[2].startswith(cid) and "Why is the sky blue?" in lines[2] and " 5 " in lines[2]
    doc = json.loads(cli("history", "ls", "--limit", "1", "--json").stdout)
    assert set(doc) == {"version", "command", "data"} and doc["version"] == 1 and doc["command"] == "history ls"
    assert set(doc["data"]) == {"path", "conversations"}
    assert doc["data"]["path"] == str(dslocal_home / "data" / "history.sqlite3")
    assert [c["id"] for c in doc["data"]["conversations"]] == [other]
    assert set(doc["data"]["conversations"][0]) == {"id", "title", "model", "backend", "created_at", "updated_at",
                                                     "message_count"}
    assert cli("history", "ls", "--limit", "0").returncode == ExitCode.USAGE


def test_history_show(cli, home_store: HistoryStore):
    cid = sample(home_store)
    shown = cli("history", "show", cid[:4])
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert out.startswith("Why is the sky blue?\n") and cid in out and "deepseek-r1:7b via ollama" in out
    assert "[user]\nWhy is the sky blue?\nAnswer in one line." in out
    assert "  > Short wavelengths scatter more." in out and "Thought for 12.3 s · 25.1 tok/s · 412 tokens" in out
    assert "[assistant (deepseek-r1:14b)]" in out and "(cut short)" in out
    assert "Short wavelengths" not in cli("history", "show", cid, "--no-thinking").stdout
    doc = json.loads(cli("history", "show", cid, "--json").stdout)
    assert set(doc) == {"version", "command", "data"} and doc["command"] == "history show"
    assert set(doc["data"]) == {"id", "title", "model", "backend", "created_at", "updated_at", "settings", "messages"}
    assert doc["data"]["id"] == cid and doc["data"]["settings"] == {"think": True, "temperature": 0.6}
    messages = doc["data"]["messages"]
    assert set(messages[0]) == {"id", "created_at", "role", "content", "thinking", "partial", "stats", "model"}
    assert messages[2]["thinking"] == "Short wavelengths scatter more." and messages[4]["partial"] is True
    assert messages[2]["stats"]["thinking_seconds"] == 12.3
    plain = json.loads(cli("history", "show", cid, "--json", "--no-thinking").stdout)
    assert all(m["thinking"] == "" for m in plain["data"]["messages"])


def test_history_errors_are_one_line_with_a_hint(cli, home_store: HistoryStore, monkeypatch):
    fresh = iter(["abc12345", "abc99999"])
    monkeypatch.setattr(history, "secrets", SimpleNamespace(token_hex=lambda _n: next(fresh)))
    home_store.new_conversation("m", "ollama")
    home_store.new_conversation("m", "ollama")
    missing = cli("history", "show", "ffff")
    assert_one_line_error(missing, ExitCode.NOT_FOUND, "ffff")
    assert "history ls" in missing.stderr
    ambiguous = cli("history", "export", "abc")
    assert_one_line_error(ambiguous, ExitCode.USAGE)
    assert "abc12345" in ambiguous.stderr and "abc99999" in ambiguous.stderr and ambiguous.stdout == ""
    as_json = json.loads(cli("history", "show", "ffff", "--json").stdout)
    assert as_json["command"] == "history show" and as_json["error"]["exit_code"] == ExitCode.NOT_FOUND
    assert cli("history", "show").returncode == ExitCode.USAGE
    assert cli("history", "rm").returncode == ExitCode.USAGE


def test_history_commands_on_a_corrupt_or_newer_file(cli, dslocal_home: Path):
    db = history_path(dslocal_home / "data")
    db.parent.mkdir(parents=True)
    db.write_bytes(b"\x00garbage" * 100)
    for args in (("history", "ls"), ("history", "show", "abc"), ("history", "rm", "abc", "--yes")):
        result = cli(*args)
        assert_one_line_error(result, ExitCode.FAILURE)
        assert str(db) in result.stderr and "move it aside" in result.stderr
    db.unlink()
    with raw(db) as conn:
        conn.execute("PRAGMA user_version = 2")
    conn.close()
    newer = cli("history", "ls", "--json")
    assert_one_line_error(newer, ExitCode.FAILURE)
    assert "schema version 2" in newer.stderr and "upgrade dslocal" in newer.stderr
    assert json.loads(newer.stdout)["error"]["exit_code"] == ExitCode.FAILURE


def test_history_export(cli, home_store: HistoryStore, tmp_path: Path):
    cid = sample(home_store)
    expected = export_markdown(home_store.get(cid))
    to_stdout = cli("history", "export", cid[:3])
    assert to_stdout.returncode == 0 and to_stdout.stdout == expected
    assert cli("history", "export", cid, "--md", "-o", "-").stdout == expected
    assert "Short wavelengths" not in cli("history", "export", cid, "--no-thinking").stdout
    out = tmp_path / "exports" / "chat.md"
    written = cli("history", "export", cid, "--md", "-o", str(out))
    assert written.returncode == 0, written.stderr
    assert written.stdout == "" and f"wrote {out}" in written.stderr
    assert out.read_text(encoding="utf-8") == expected
    assert os.listdir(out.parent) == ["chat.md"]  # no temporary file left beside it
    out.write_text("mine", encoding="utf-8")
    refused = cli("history", "export", cid, "-o", str(out))
    assert_one_line_error(refused, ExitCode.INPUT)
    assert out.read_text(encoding="utf-8") == "mine"
    assert cli("history", "export", "ffff", "-o", str(out), "--force").returncode == ExitCode.NOT_FOUND
    assert out.read_text(encoding="utf-8") == "mine"
    assert cli("history", "export", cid, "-o", str(out), "--force").returncode == 0
    assert out.read_text(encoding="utf-8") == expected
    assert cli("history", "export", cid, "-o", str(tmp_path)).returncode != 0  # a folder


def test_history_export_writes_a_temporary_name_then_renames(home_store: HistoryStore, tmp_path: Path, monkeypatch):
    import dslocal.fsutil

    cid = sample(home_store)
    out = tmp_path / "chat.md"
    out.write_text("old", encoding="utf-8")
    renames = []
    real_replace = os.replace

    def watching_replace(src, dst):
        renames.append((Path(src), Path(dst), Path(src).read_text(encoding="utf-8"), out.read_text(encoding="utf-8")))
        real_replace(src, dst)

    monkeypatch.setattr(dslocal.fsutil.os, "replace", watching_replace)
    result = invoke("history", "export", cid, "-o", str(out), "--force")
    assert result.returncode == 0, result.stderr
    [(src, dst, new_text, old_text)] = renames
    assert dst == out and src.parent == out.parent and src.name != out.name
    assert old_text == "old" and new_text.startswith("# Why is the sky blue?")  # out was whole until the rename
    assert not src.exists() and out.read_text(encoding="utf-8") == new_text


def test_history_rm(cli, home_store: HistoryStore, monkeypatch):
    first, second, third = sample(home_store), sample(home_store), sample(home_store)
    refused = cli("history", "rm", first)  # stdin is not a terminal (the cli fixture gives /dev/null)
    assert_one_line_error(refused, ExitCode.USAGE)
    assert "--yes" in refused.stderr
    assert len(home_store.list()) == 3

    code, _out, err = run_tty("history", "rm", first[:5], answer="n\n", monkeypatch=monkeypatch)
    assert code == 1 and "Delete 1 conversation?" in err and "nothing deleted" in err
    assert len(home_store.list()) == 3
    code, _out, err = run_tty("history", "rm", first, first[:4], second, answer="y\n", monkeypatch=monkeypatch)
    assert code == 0, err
    assert "Delete 2 conversations?" in err and f"deleted {first}" in err and f"deleted {second}" in err
    assert [s.id for s in home_store.list()] == [third]

    partly_unknown = cli("history", "rm", third, "ffff", "--yes")  # every ID is checked before any is deleted
    assert partly_unknown.returncode == ExitCode.NOT_FOUND
    assert [s.id for s in home_store.list()] == [third]
    removed = cli("history", "rm", third, "--yes")
    assert removed.returncode == 0 and f"deleted {third}" in removed.stderr and removed.stdout == ""
    assert home_store.list() == []


def test_history_help_has_examples(cli):
    for args in (("history",), ("history", "ls"), ("history", "show"), ("history", "export"), ("history", "rm")):
        result = cli(*args, "--help")
        assert result.returncode == 0 and "Examples:" in result.stdout, args
