"""Conversation export: what is stored comes back out of a JSONL or CSV file, field for field, on
SQLite and PostgreSQL; a user's export is theirs only, a forgotten user's is empty."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from bot import export_formats
from bot.conversation_export import ConversationExporter
from bot.export_formats import FIELDS, ExportFormat, write_jsonl
from storage import exports, feedback, privacy
from storage.conversations import (
    ChatRef,
    UserRef,
    find_user,
    get_or_create_chat,
    get_or_create_user,
    save_exchange,
    save_reply,
    save_turn,
)
from storage.database import Database
from storage.exports import ConversationQuery

ANN = UserRef("telegram", 101, "Ann")
BOB = UserRef("telegram", 102, "Bob")
ANNS_CHAT = ChatRef("telegram", 101, "private")
BOBS_CHAT = ChatRef("telegram", 102, "private")
GROUP = ChatRef("telegram", -1001, "group", "Friends")
INT_FIELDS = ("message_id", "reply_to_message_id", "feedback_up", "feedback_down")
# Texts a careless writer would break: commas, quotes, line breaks of every kind, emoji, RTL.
TRICKY = 'a, "quoted" word;\nline two\r\nline three\u2028after a line separator 😀 שלום'


@dataclass(frozen=True)
class Said:
    """What the test stored, as the export must show it (ids and times aside)."""

    chat_id: str
    chat_kind: str
    user_id: str | None
    user_name: str | None
    role: str
    text: str
    model_version: str | None = None
    feedback_up: int = 0
    feedback_down: int = 0
    answers_previous: bool = False  # reply_to_message_id is the message just before it

    def matches(self, record: dict[str, Any], previous: dict[str, Any] | None) -> bool:
        expected_reply_to = previous["message_id"] if self.answers_previous and previous else None
        return (
            record["platform"] == "telegram"
            and record["chat_id"] == self.chat_id
            and record["chat_kind"] == self.chat_kind
            and record["user_id"] == self.user_id
            and record["user_name"] == self.user_name
            and record["role"] == self.role
            and record["text"] == self.text
            and record["model_version"] == self.model_version
            and record["feedback_up"] == self.feedback_up
            and record["feedback_down"] == self.feedback_down
            and record["reply_to_message_id"] == expected_reply_to
        )


def _person(chat: ChatRef, user: UserRef, text: str) -> Said:
    return Said(
        str(chat.external_id),
        str(chat.kind),
        str(user.external_id),
        user.display_name,
        "user",
        text,
    )


def _bot(chat: ChatRef, text: str, version: str | None, up: int = 0, down: int = 0) -> Said:
    kind = str(chat.kind)
    return Said(str(chat.external_id), kind, None, None, "bot", text, version, up, down, True)


def _seed(session: Session) -> None:
    """Ann in her private chat and in a group, Bob in the group and his private chat."""
    first = save_exchange(session, ANNS_CHAT, ANN, "hello, world", 'hi "there"', model_version="v1")
    feedback.set_feedback(session, first.reply_id, first.user_id, 1)
    second = save_exchange(session, ANNS_CHAT, ANN, TRICKY, "ok", model_version="v1")
    feedback.set_feedback(session, second.reply_id, second.user_id, -1)
    save_exchange(session, GROUP, ANN, "morning, all", "morning!", model_version="v2")
    group, bob = get_or_create_chat(session, GROUP), get_or_create_user(session, BOB)
    save_turn(session, chat_id=group, user_id=bob, text="morning ann")
    bobs = save_exchange(session, GROUP, BOB, "a fixed answer follows", "…")  # no model
    feedback.set_feedback(session, bobs.reply_id, first.user_id, 1)  # Ann rates Bob's reply
    save_exchange(session, BOBS_CHAT, BOB, "bob alone", "hey bob", model_version="v2")


ANNS_HISTORY = [
    _person(ANNS_CHAT, ANN, "hello, world"),
    _bot(ANNS_CHAT, 'hi "there"', "v1", up=1),
    _person(ANNS_CHAT, ANN, TRICKY),
    _bot(ANNS_CHAT, "ok", "v1", down=1),
    _person(GROUP, ANN, "morning, all"),
    _bot(GROUP, "morning!", "v2"),
]
GROUP_HISTORY = [
    _person(GROUP, ANN, "morning, all"),
    _bot(GROUP, "morning!", "v2"),
    _person(GROUP, BOB, "morning ann"),
    _person(GROUP, BOB, "a fixed answer follows"),
    _bot(GROUP, "…", None, up=1),
]


def parse_jsonl(data: bytes) -> list[dict[str, Any]]:
    text = data.decode("utf-8")
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.split("\n") if line]


def parse_csv(data: bytes) -> list[dict[str, Any]]:
    """Rows as the JSONL has them: empty -> None, the counts and ids as numbers."""
    reader = csv.DictReader(io.StringIO(data.decode("utf-8"), newline=""))
    assert reader.fieldnames == list(FIELDS)
    records = []
    for row in reader:
        record: dict[str, Any] = {k: (v if v != "" else None) for k, v in row.items()}
        for name in INT_FIELDS:
            record[name] = None if record[name] is None else int(record[name])
        records.append(record)
    return records


def _export(db: Database, query: ConversationQuery, path: Path) -> dict[str, Any]:
    """The query exported both ways and parsed back: the records (the same from both files)."""
    exporter = ConversationExporter(db)
    jsonl, as_csv = path.with_suffix(".jsonl"), path.with_suffix(".csv")
    by_jsonl = exporter.write_file(query, ExportFormat.JSONL, jsonl)
    by_csv = exporter.write_file(query, ExportFormat.CSV, as_csv)
    records = parse_jsonl(jsonl.read_bytes())
    assert parse_csv(as_csv.read_bytes()) == records
    assert by_jsonl == by_csv and by_jsonl.messages == len(records)
    return {"records": records, "known": by_jsonl.known, "jsonl": jsonl, "csv": as_csv}


def _assert_history(records: list[dict[str, Any]], expected: list[Said]) -> None:
    assert len(records) == len(expected), [r["text"] for r in records]
    for index, (record, said) in enumerate(zip(records, expected, strict=True)):
        previous = records[index - 1] if index else None
        assert said.matches(record, previous), (record, said)
        assert list(record) == list(FIELDS)
        assert datetime.fromisoformat(record["time"]).utcoffset() == timedelta(0)
    chats: dict[str, list[int]] = {}
    for record in records:
        chats.setdefault(record["chat_id"], []).append(record["message_id"])
    assert all(ids == sorted(ids) for ids in chats.values())  # each chat in order


def test_a_user_export_holds_their_messages_in_every_chat_and_the_replies_to_them(
    database: Database, tmp_path: Path
) -> None:
    with database.begin() as session:
        _seed(session)

    found = _export(database, ConversationQuery(user="101"), tmp_path / "ann")

    assert found["known"] is True
    _assert_history(found["records"], ANNS_HISTORY)
    assert b"bob" not in found["jsonl"].read_bytes().lower()  # nothing of Bob's, not even a name


def test_a_chat_export_holds_everyone_in_it_in_order(database: Database, tmp_path: Path) -> None:
    with database.begin() as session:
        _seed(session)

    found = _export(database, ConversationQuery(chat="-1001"), tmp_path / "group")

    _assert_history(found["records"], GROUP_HISTORY)


def test_tricky_text_survives_both_formats_byte_for_byte(
    database: Database, tmp_path: Path
) -> None:
    with database.begin() as session:
        _seed(session)

    found = _export(database, ConversationQuery(user="101"), tmp_path / "ann")

    assert found["records"][2]["text"] == TRICKY
    raw_jsonl = found["jsonl"].read_bytes()
    assert "😀 שלום".encode() in raw_jsonl  # readable UTF-8, not \\u escapes
    assert "\u2028".encode() not in raw_jsonl  # escaped: no reader splits a line there
    assert raw_jsonl.count(b"\n") == len(found["records"])
    raw_csv = found["csv"].read_bytes()
    assert not raw_csv.startswith(b"\xef\xbb\xbf")  # no byte order mark
    assert b'"a, ""quoted"" word;\nline two\r\nline three' in raw_csv  # quoted, quotes doubled


def test_since_keeps_later_messages_and_narrows_a_user_or_chat(
    database: Database, tmp_path: Path
) -> None:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    with database.begin() as session:
        chat, ann = get_or_create_chat(session, ANNS_CHAT), get_or_create_user(session, ANN)
        group, bob = get_or_create_chat(session, GROUP), get_or_create_user(session, BOB)
        for day in range(4):
            at = start + timedelta(days=day)
            turn = save_turn(session, chat_id=chat, user_id=ann, text=f"day {day}", created_at=at)
            save_reply(session, chat_id=chat, text=f"re {day}", reply_to_id=turn, created_at=at)
            save_turn(session, chat_id=group, user_id=bob, text=f"bob {day}", created_at=at)

    def texts(query: ConversationQuery) -> list[str]:
        return [r["text"] for r in _export(database, query, tmp_path / "since")["records"]]

    since = start + timedelta(days=2)
    everyone = ["day 2", "re 2", "day 3", "re 3", "bob 2", "bob 3"]  # chat by chat
    assert texts(ConversationQuery(since=since)) == everyone
    assert texts(ConversationQuery(user="101", since=since)) == ["day 2", "re 2", "day 3", "re 3"]
    assert texts(ConversationQuery(chat="-1001", since=since)) == ["bob 2", "bob 3"]
    assert texts(ConversationQuery(since=start + timedelta(days=9))) == []


def test_a_forgotten_user_exports_nothing(database: Database, tmp_path: Path) -> None:
    with database.begin() as session:
        _seed(session)
        ann = find_user(session, "telegram", 101)
        assert ann is not None
        privacy.forget_user(session, ann)

    found = _export(database, ConversationQuery(user="101"), tmp_path / "ann")

    assert found["known"] is False and found["records"] == []
    assert found["jsonl"].read_bytes() == b""
    assert found["csv"].read_bytes() == (",".join(FIELDS) + "\r\n").encode()
    group = _export(database, ConversationQuery(chat="-1001"), tmp_path / "group")["records"]
    assert [r["user_id"] for r in group] == ["102", "102", None]  # Bob's part of the group stays


def test_an_unknown_user_or_chat_exports_nothing(database: Database, tmp_path: Path) -> None:
    with database.begin() as session:
        _seed(session)

    for query in (
        ConversationQuery(user="999"),
        ConversationQuery(chat="999"),
        ConversationQuery(platform="console", user="101"),  # Ann is a Telegram user
    ):
        found = _export(database, query, tmp_path / "nobody")
        assert (found["known"], found["records"]) == (False, [])


def test_a_platform_that_is_not_one_is_an_error_not_nothing_stored(database: Database) -> None:
    # "Nothing stored for irc user 101" would be a wrong answer to a data request; the CLI and
    # the front ends refuse such a platform before they get here.
    with database.begin() as session:
        _seed(session)

    with database.session() as session:
        for query in (
            ConversationQuery(platform="irc", user="101"),
            ConversationQuery("irc", chat="101"),
        ):
            with pytest.raises(ValueError, match="irc"):
                exports.conversation_subject_known(session, query)
            with pytest.raises(ValueError, match="irc"):
                list(exports.iter_conversations(session, query))


def test_rows_are_streamed_in_chunks_in_order(database: Database) -> None:
    with database.begin() as session:
        chat, ann = get_or_create_chat(session, ANNS_CHAT), get_or_create_user(session, ANN)
        for n in range(25):
            save_turn(session, chat_id=chat, user_id=ann, text=str(n))

    with database.session() as session:
        rows = exports.iter_conversations(session, ConversationQuery(user="101"), chunk_size=4)
        first = next(rows)  # a generator: rows come as they are read, not as one list
        rest = list(rows)

    assert [row.text for row in [first, *rest]] == [str(n) for n in range(25)]


def test_a_failed_export_leaves_the_previous_file_and_no_partial_one(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with database.begin() as session:
        _seed(session)
    out = tmp_path / "ann.jsonl"
    out.write_text("the previous export\n")

    def fail_halfway(rows: Iterable[exports.ConversationRow], stream: Any) -> int:
        write_jsonl(list(rows)[:2], stream)
        raise OSError(28, "No space left on device")

    monkeypatch.setitem(export_formats.WRITERS, ExportFormat.JSONL, fail_halfway)
    with pytest.raises(OSError, match="No space left"):
        ConversationExporter(database).write_file(
            ConversationQuery(user="101"), ExportFormat.JSONL, out
        )

    assert out.read_text() == "the previous export\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []


def test_an_export_file_is_readable_by_its_owner_only(database: Database, tmp_path: Path) -> None:
    with database.begin() as session:
        _seed(session)
    out = tmp_path / "ann.csv"

    ConversationExporter(database).write_file(ConversationQuery(user="101"), ExportFormat.CSV, out)

    assert os.stat(out).st_mode & 0o777 == 0o600


def test_export_and_forget_agree_on_a_reply_whose_question_is_gone(
    database: Database, tmp_path: Path
) -> None:
    """A bot message in the person's private chat that answers nothing stored any more (its
    question went with retention) is theirs: /export hands it over and /forget deletes it."""
    with database.begin() as session:
        _seed(session)
        chat = get_or_create_chat(session, ANNS_CHAT)
        save_reply(session, chat_id=chat, text="an orphaned answer", reply_to_id=None)

    records = _export(database, ConversationQuery(user="101"), tmp_path / "ann")["records"]
    assert "an orphaned answer" in [r["text"] for r in records]

    with database.begin() as session:
        ann = find_user(session, "telegram", 101)
        assert ann is not None
        privacy.forget_user(session, ann)
    everything = _export(
        database, ConversationQuery(since=datetime(2000, 1, 1, tzinfo=UTC)), tmp_path / "all"
    )
    assert "an orphaned answer" not in [r["text"] for r in everything["records"]]
