"""A word from the chat logs joins a model's vocabulary at retraining only when at least
`retrain.vocab_min_users` (default 3) different people wrote it: however often one person (or two)
writes a word of their own, it never gets a row in a model that anyone can talk to."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from bot.retraining import job, worker
from bot.retraining.collect import allowed_new_words, collect
from bot.retraining.contract import TokenizedTurnsPair, WorkerJob
from config import Settings
from nlp.checkpoint import load_checkpoint
from storage.conversations import (
    ChatRef,
    UserRef,
    get_or_create_chat,
    get_or_create_user,
    save_turn,
)
from storage.database import Database
from tests.support.retraining import with_retrain

ASKER = UserRef("telegram", 650, "Asker")
PEOPLE = [UserRef("telegram", 601 + n, f"Person {n}") for n in range(3)]
# word -> how many different people write it (each of them twice, in answers of their own)
WORDS = {"zorblax": 1, "quixel": 2, "flumph": 3}


def _seed(db: Database) -> None:
    """In groups of their own, the asker asks and a person answers with one of `WORDS`."""

    def seed(session: Session) -> None:
        asker = get_or_create_user(session, ASKER)
        group = 9000
        for word, people in WORDS.items():
            for person in PEOPLE[:people]:
                writer = get_or_create_user(session, person)
                for answer in (f"i saw a {word} today", f"my {word} is here"):
                    group += 1
                    chat = get_or_create_chat(session, ChatRef("telegram", -group, "group"))
                    save_turn(session, chat_id=chat, user_id=asker, text="what is new?")
                    save_turn(session, chat_id=chat, user_id=writer, text=answer)

    db.transact(seed)


def test_the_pairs_count_the_people_who_wrote_each_word(settings: Settings, db: Database) -> None:
    _seed(db)
    pairs = collect(settings, db, None, settings.model_dir)

    assert {word: pairs.word_users[word] for word in WORDS} == WORDS
    assert pairs.word_users["what"] == 1  # the asker's words: one person, however often
    assert settings.retrain.vocab_min_users == 3  # the default
    allowed = allowed_new_words(pairs, settings.retrain.vocab_min_users)
    assert "flumph" in allowed and "quixel" not in allowed and "zorblax" not in allowed
    assert "quixel" in allowed_new_words(pairs, 2) and "zorblax" not in allowed_new_words(pairs, 2)


def test_a_run_passes_the_allowed_words_to_its_worker(settings: Settings, db: Database) -> None:
    _seed(db)
    prepared = job.start_retrain(settings, db, trigger="test", force=True)
    work_job = job._worker_job(settings, prepared, Path("/nonexistent"))

    assert "flumph" in work_job.allowed_new_words
    assert not {"quixel", "zorblax"} & set(work_job.allowed_new_words)


def test_the_worker_adds_a_word_three_people_wrote_and_not_one_fewer_wrote(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    _seed(db)
    settings = with_retrain(settings, new_word_min_count=1)  # uses are not what holds them back
    pairs = collect(settings, db, None, settings.model_dir)
    turns = [
        TokenizedTurnsPair(context=[list(t) for t in p.context], reply=list(p.reply))
        for p in pairs.pairs
    ]
    r = settings.retrain
    work_job = WorkerJob(
        parent_dir=settings.model_dir,
        work_dir=tmp_path,
        new_train=turns,
        new_heldout=turns[:1],
        base_sources=r.base_sources,
        base_sample_pairs=r.base_sample_pairs,
        new_pair_repeats=r.new_pair_repeats,
        new_word_min_count=r.new_word_min_count,
        max_new_words=r.max_new_words,
        allowed_new_words=allowed_new_words(pairs, r.vocab_min_users),
        training=r.training,
    )
    assert not set(WORDS) & set(load_checkpoint(settings.model_dir).vocab.itos)  # all new

    prepared = worker._prepare(work_job)

    assert "flumph" in prepared.added and "flumph" in prepared.parent.vocab
    assert "quixel" not in prepared.parent.vocab and "zorblax" not in prepared.parent.vocab
    assert prepared.parent.model.embedding.num_embeddings == len(prepared.parent.vocab)
