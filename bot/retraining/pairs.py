"""Chat logs -> training pairs: the rules the README documents, in one function.

`training_pairs_from_logs` takes what is new since a training run. Which messages pair up is the
export's (`storage.exports`, in SQL): human follow-ups (a human message and the turn before it in
the same chat, or the message it explicitly replied to: a user answering the bot, or one person
answering another in a group), taught pairs (`/teach context => reply`), and bot replies that got
a 👍 and no 👎; never other bot replies, nothing of a user who opted out (the rows of forgotten
users are gone already). What the text says is decided here, in this order: every text is
normalised and tokenised with e-mail addresses, URLs and numbers masked; pairs with a blocklisted
word or phrase in the context or the reply are dropped; exact duplicates (after masking) are
collapsed to the first one.

For the vocabulary rule (a word joins the model's vocabulary only when enough different people
wrote it: `collect.allowed_new_words`), `LogPairs.word_users` counts, for every token, the people
who wrote a text of a pair that was kept, or dropped only as a duplicate (the same pair written
by several people is evidence that several people wrote it). The bot writes no words: its texts
count for nobody; a taught pair counts for whoever taught it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from bot.retraining.blocklist import Blocklist
from nlp.text import TextProcessor
from storage import exports
from storage.exports import TrainingPair
from storage.training_runs import RunInfo

HUMAN, TAUGHT, UPVOTED = "human", "taught", "upvoted"


@dataclass(frozen=True)
class LogPair:
    """A pair from the logs, masked and tokenised: context turns (oldest first) and reply."""

    context: tuple[tuple[str, ...], ...]
    reply: tuple[str, ...]
    kind: str  # HUMAN | TAUGHT | UPVOTED
    key: str  # stable id ("message:<reply id>" / "taught:<id>"): fixes the held-out split

    @property
    def context_text(self) -> str:
        return " | ".join(" ".join(turn) for turn in self.context)

    @property
    def reply_text(self) -> str:
        return " ".join(self.reply)


@dataclass(frozen=True)
class LogPairs:
    pairs: list[LogPair]
    exported: int  # pairs the export chose before the rules below
    dropped: dict[str, int]  # reason -> count: downvoted, empty, blocklisted, duplicate
    last_message_id: int | None  # watermarks to store with the run that trains on them
    last_taught_pair_id: int | None
    kinds: dict[str, int] = field(default_factory=dict)
    # token -> how many different people wrote it in these pairs (see the module docstring)
    word_users: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.pairs)


def training_pairs_from_logs(
    session: Session,
    since: RunInfo | None,
    processor: TextProcessor,
    blocklist: Blocklist,
    *,
    context_turns: int = 1,
    settle: timedelta = timedelta(seconds=60),
    now: datetime | None = None,
) -> LogPairs:
    """The training pairs new since `since` (None: since the beginning); see the module docstring.

    `processor` should mask e-mails, URLs and numbers (`TextSettings` defaults do); `settle`
    leaves the newest messages to the next run (see `storage.exports.export_since_run`).
    """
    export = exports.export_since_run(
        session, since, context_turns=context_turns, settle=settle, now=now
    )
    raw_pairs = export.pairs
    dropped: Counter[str] = Counter()
    if export.downvoted:
        dropped["downvoted"] = export.downvoted

    texts = sorted({t for p in raw_pairs for t in (*p.context, p.reply)})
    tokens = dict(zip(texts, processor.tokenize_many(texts), strict=True))
    writers: defaultdict[str, set[int]] = defaultdict(set)
    pairs: list[LogPair] = []
    seen: set[tuple[tuple[tuple[str, ...], ...], tuple[str, ...]]] = set()
    for raw in raw_pairs:
        context = tuple(tuple(tokens[turn]) for turn in raw.context if tokens[turn])
        reply = tuple(tokens[raw.reply])
        if not context or not reply:
            dropped["empty"] += 1
            continue
        if blocklist.blocks(reply) or any(blocklist.blocks(turn) for turn in context):
            dropped["blocklisted"] += 1
            continue
        for text, author in zip((*raw.context, raw.reply), raw.authors, strict=True):
            if author is not None:
                for token in tokens[text]:
                    writers[token].add(author)
        if (context, reply) in seen:
            dropped["duplicate"] += 1
            continue
        seen.add((context, reply))
        pairs.append(LogPair(context, reply, _kind(raw), _key(raw)))
    return LogPairs(
        pairs=pairs,
        exported=len(raw_pairs) + export.downvoted,
        dropped=dict(dropped),
        last_message_id=export.last_message_id,
        last_taught_pair_id=export.last_taught_pair_id,
        kinds=dict(Counter(p.kind for p in pairs)),
        word_users={token: len(people) for token, people in writers.items()},
    )


def _kind(pair: TrainingPair) -> str:
    if pair.source == "taught":
        return TAUGHT
    return UPVOTED if pair.reply_from_bot else HUMAN


def _key(pair: TrainingPair) -> str:
    if pair.source == "taught":
        return f"taught:{pair.taught_pair_id}"
    return f"message:{pair.reply_message_id}"
