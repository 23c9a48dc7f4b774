"""The one decoding step every strategy calls: feed the last token, get constrained log-probs.

Constraints live here, not in the strategies, so greedy, beam, sampling and reranking obey the
same rules: banned tokens (specials such as `<unk>`, blocklisted words, PII-looking tokens) are
never produced, nor is the last token of a banned phrase; `<eos>` waits for the minimum length and,
when the constraints name the vocabulary's words, for a real word (a reply is never only
placeholders or punctuation); n-grams already in the reply are not repeated, nor (where asked)
the last token or a content word already said.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import torch
from torch import Tensor

from config import DecodingSettings
from nlp.seq2seq import EncoderMemory, Hidden, Seq2Seq, select_hidden
from nlp.vocabulary import EOS_ID, PAD_ID, SEP_ID, SOS_ID, UNK_ID

NEVER_GENERATED = (PAD_ID, UNK_ID, SOS_ID, SEP_ID)


@dataclass(frozen=True)
class StepConstraints:
    min_length: int = 0  # tokens before <eos> is allowed
    no_repeat_ngram: int = 0  # 0 = off; n = an n-gram may occur once per reply
    banned: tuple[int, ...] = NEVER_GENERATED  # ids never produced
    # Id sequences (two or more) never produced: their last id is banned after the rest.
    banned_phrases: tuple[tuple[int, ...], ...] = ()
    # None: any reply may end. Ids: <eos> is banned until one of these (a real word) was
    # generated, and a reply with none by its last step must take one there.
    word_ids: tuple[int, ...] | None = None
    no_immediate_repeat: bool = False  # no token right after itself
    once_ids: tuple[int, ...] = ()  # ids that occur at most once a reply (content words)

    @classmethod
    def from_settings(cls, settings: DecodingSettings) -> StepConstraints:
        """Without a vocabulary: no content words are known, so only the immediate repeat."""
        return cls(
            settings.min_length,
            settings.no_repeat_ngram,
            no_immediate_repeat=settings.no_repeat_words,
        )


@dataclass(frozen=True)
class _PhraseTable:
    """Banned phrases of one length n: prefixes (M, n - 1) and the last ids (M,) they ban."""

    prefixes: Tensor
    last: Tensor


class Stepper:
    """Holds the decoder state of N rows (batch x beam); `__call__` advances it by one token.

    `max_length` is the reply's room: with word ids in the constraints, a row that reaches its
    last step without a word must pick one there.
    """

    def __init__(
        self,
        model: Seq2Seq,
        memory: EncoderMemory,
        hidden: Hidden,
        constraints: StepConstraints,
        keep_attention: bool = False,
        max_length: int | None = None,
    ) -> None:
        self.model = model
        self.memory = memory
        self.hidden = hidden
        self.constraints = constraints
        self.keep_attention = keep_attention
        self.max_length = max_length
        device = memory.keys.device
        self._banned = torch.tensor(constraints.banned, dtype=torch.long, device=device)
        self._phrases = _phrase_tables(constraints.banned_phrases, device)
        self._word_mask = _word_mask(constraints, model.vocab_size, device)  # (vocab,) or None
        self._once_mask = _id_mask(constraints.once_ids, model.vocab_size, device)
        self.last_attention: Tensor | None = None  # (N, src_len) of the latest step

    def __call__(self, history: Tensor) -> Tensor:
        """history: (N, t) ids so far, starting with <sos> -> log-probs (N, vocab) of token t."""
        logits, self.hidden, weights = self.model.decoder(history[:, -1:], self.hidden, self.memory)
        if self.keep_attention:
            self.last_attention = weights[:, 0]
        log_probs = torch.log_softmax(logits[:, 0].float(), dim=-1)
        return self._constrain(log_probs, history)

    def reorder(self, index: Tensor) -> None:
        """Keep rows `index` of the decoder state (beam search's survivors)."""
        self.hidden = select_hidden(self.hidden, index)

    def keep_rows(self, index: Tensor) -> None:
        """Keep rows `index` of the decoder state and of the encoder memory (rows that finished
        leave: the next call's history has only the kept rows)."""
        self.hidden = select_hidden(self.hidden, index)
        self.memory = self.memory.index_select(index)

    def _constrain(self, log_probs: Tensor, history: Tensor) -> Tensor:
        c = self.constraints
        log_probs.index_fill_(1, self._banned, float("-inf"))
        generated = history.size(1) - 1  # without <sos>
        if generated < c.min_length:
            log_probs[:, EOS_ID] = float("-inf")
        reply = history[:, 1:]  # (N, generated)
        if self._word_mask is not None:
            self._require_a_word(log_probs, reply)
        for n, table in self._phrases.items():
            if generated >= n - 1:
                _block_phrases(log_probs, reply, table)
        n = c.no_repeat_ngram
        if n and generated >= n:
            _block_repeated_ngrams(log_probs, reply, n)
        if c.no_immediate_repeat and generated:
            log_probs.scatter_(1, reply[:, -1:], float("-inf"))
        if self._once_mask is not None and generated:
            # Ids said once ban themselves; every other position points at <pad> (never made).
            said = torch.where(self._once_mask[reply], reply, torch.full_like(reply, PAD_ID))
            log_probs.scatter_(1, said, float("-inf"))
        return log_probs

    def _require_a_word(self, log_probs: Tensor, reply: Tensor) -> None:
        """No <eos> before a word; on the last step a row without a word may only pick one."""
        assert self._word_mask is not None
        wordless = ~self._word_mask[reply].any(dim=1)  # (N,) True where no word yet
        log_probs[:, EOS_ID].masked_fill_(wordless, float("-inf"))
        if self.max_length is not None and reply.size(1) == self.max_length - 1:
            not_words = wordless.unsqueeze(1) & ~self._word_mask.unsqueeze(0)  # (N, vocab)
            log_probs.masked_fill_(not_words, float("-inf"))


def _word_mask(
    constraints: StepConstraints, vocab_size: int, device: torch.device
) -> Tensor | None:
    """(vocab,) True at the word ids that may be generated; None when the rule is off (or no
    word is left to generate, so that no row is left without any token to pick)."""
    mask = _id_mask(constraints.word_ids or (), vocab_size, device)
    if mask is None:
        return None
    mask[torch.tensor(constraints.banned, dtype=torch.long, device=device)] = False
    return mask if bool(mask.any()) else None


def _id_mask(ids: tuple[int, ...], vocab_size: int, device: torch.device) -> Tensor | None:
    """(vocab,) True at `ids`; None when there are none."""
    if not ids:
        return None
    mask = torch.zeros(vocab_size, dtype=torch.bool, device=device)
    mask[torch.tensor(ids, dtype=torch.long, device=device)] = True
    return mask


def _phrase_tables(
    phrases: tuple[tuple[int, ...], ...], device: torch.device
) -> dict[int, _PhraseTable]:
    """Banned phrases grouped by length, as tensors, once per decode."""
    by_length: dict[int, list[tuple[int, ...]]] = defaultdict(list)
    for phrase in phrases:
        if len(phrase) < 2:
            raise ValueError(
                f"a banned phrase has two or more ids (one id goes in banned): {phrase}"
            )
        by_length[len(phrase)].append(phrase)
    return {
        n: _PhraseTable(
            torch.tensor([p[:-1] for p in group], dtype=torch.long, device=device),
            torch.tensor([p[-1] for p in group], dtype=torch.long, device=device),
        )
        for n, group in by_length.items()
    }


def _block_phrases(log_probs: Tensor, reply: Tensor, table: _PhraseTable) -> None:
    """Ban a phrase's last id in every row whose reply ends with the phrase's prefix."""
    tail = reply[:, reply.size(1) - table.prefixes.size(1) :]  # (N, n - 1)
    matches = (tail.unsqueeze(1) == table.prefixes.unsqueeze(0)).all(dim=-1)  # (N, M)
    rows, phrases = matches.nonzero(as_tuple=True)
    if rows.numel():
        log_probs[rows, table.last[phrases]] = float("-inf")


def _block_repeated_ngrams(log_probs: Tensor, generated: Tensor, n: int) -> None:
    """Ban every token that would complete an n-gram already present in its row (vectorised)."""
    ngrams = generated.unfold(1, n, 1)  # (N, count, n)
    current_prefix = generated[:, -(n - 1) :] if n > 1 else generated[:, :0]
    matches = (ngrams[:, :, :-1] == current_prefix.unsqueeze(1)).all(dim=-1)  # (N, count)
    rows, positions = matches.nonzero(as_tuple=True)
    if rows.numel():
        log_probs[rows, ngrams[rows, positions, -1]] = float("-inf")
