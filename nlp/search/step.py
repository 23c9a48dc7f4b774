"""The one decoding step every strategy calls: feed the last token, get constrained log-probs.

Constraints live here, not in the strategies, so greedy, beam and sampling obey the same rules:
specials such as `<unk>` are never produced, `<eos>` waits for the minimum length, and n-grams
already in the reply are not repeated.
"""

from __future__ import annotations

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
    banned: tuple[int, ...] = NEVER_GENERATED

    @classmethod
    def from_settings(cls, settings: DecodingSettings) -> StepConstraints:
        return cls(settings.min_length, settings.no_repeat_ngram)


class Stepper:
    """Holds the decoder state of N rows (batch x beam); `__call__` advances it by one token."""

    def __init__(
        self,
        model: Seq2Seq,
        memory: EncoderMemory,
        hidden: Hidden,
        constraints: StepConstraints,
        keep_attention: bool = False,
    ) -> None:
        self.model = model
        self.memory = memory
        self.hidden = hidden
        self.constraints = constraints
        self.keep_attention = keep_attention
        self._banned = torch.tensor(constraints.banned, dtype=torch.long, device=memory.keys.device)
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

    def _constrain(self, log_probs: Tensor, history: Tensor) -> Tensor:
        c = self.constraints
        log_probs.index_fill_(1, self._banned, float("-inf"))
        generated = history.size(1) - 1  # without <sos>
        if generated < c.min_length:
            log_probs[:, EOS_ID] = float("-inf")
        n = c.no_repeat_ngram
        if n and generated >= n:
            _block_repeated_ngrams(log_probs, history[:, 1:], n)
        return log_probs


def _block_repeated_ngrams(log_probs: Tensor, generated: Tensor, n: int) -> None:
    """Ban every token that would complete an n-gram already present in its row (vectorised)."""
    ngrams = generated.unfold(1, n, 1)  # (N, count, n)
    current_prefix = generated[:, -(n - 1) :] if n > 1 else generated[:, :0]
    matches = (ngrams[:, :, :-1] == current_prefix.unsqueeze(1)).all(dim=-1)  # (N, count)
    rows, positions = matches.nonzero(as_tuple=True)
    if rows.numel():
        log_probs[rows, ngrams[rows, positions, -1]] = float("-inf")
