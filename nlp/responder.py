"""The one object the bot talks to: load a checkpoint once, turn contexts into replies.

`reply()` takes many contexts and decodes them as one batch (the bot micro-batches requests from
many chats into one call). A lock serialises decodes, so concurrent threads can share a Responder;
batching, not parallel decodes, is what makes many chats fast on a small CPU.

Every reply is safe to show as it is: the decoder never says a blocklisted word or phrase
(`DecodingSettings.blocklist_path`) or a token that looks like a number, an e-mail or a URL, never
ends a reply that is only placeholders or punctuation (`nlp.search.vocab_rules`), and placeholders
are rendered as plain words (`nlp.rendering`).
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from config import DecodingSettings
from nlp.checkpoint import load_checkpoint
from nlp.datasets import pad
from nlp.errors import EmptyInputError
from nlp.rendering import render
from nlp.search.decode import decode
from nlp.search.greedy import greedy_search
from nlp.search.hypothesis import Hypothesis
from nlp.search.mmi import ReverseModel
from nlp.search.vocab_rules import VocabularyRules, read_blocklist
from nlp.seq2seq import Seq2Seq
from nlp.text import TextProcessor
from nlp.vocabulary import UNK_ID

Context = str | Sequence[str]  # one turn, or the recent turns oldest first


@dataclass
class Reply:
    text: str  # what a person reads: placeholders rendered as words
    tokens: list[str]  # what the model said (placeholders as they are)
    score: float


def quantize_int8(model: Seq2Seq) -> torch.nn.Module:
    """Dynamic int8 quantisation of the Linear and RNN layers (CPU inference only)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated but still works
        quantized: torch.nn.Module = torch.ao.quantization.quantize_dynamic(  # type: ignore[no-untyped-call]
            model, {torch.nn.Linear, torch.nn.GRU, torch.nn.LSTM}, dtype=torch.qint8
        )
    return quantized


class Responder:
    def __init__(
        self,
        checkpoint_dir: Path | str,
        decoding: DecodingSettings | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        self.checkpoint_dir = Path(checkpoint_dir)
        self.decoding = decoding or DecodingSettings()
        self.device = torch.device(device)
        checkpoint = load_checkpoint(self.checkpoint_dir, self.device)
        self.vocab = checkpoint.vocab
        self.metrics = checkpoint.metrics
        self.info = checkpoint.info
        self.recipe = checkpoint.recipe
        self.processor = TextProcessor(checkpoint.text_settings)
        self.model: Seq2Seq = checkpoint.model
        if self.decoding.quantize_int8 and self.device.type == "cpu":
            self.model = quantize_int8(self.model)  # type: ignore[assignment]
        self.reverse_model = (
            ReverseModel.load(self.decoding.mmi_reverse_dir, self.vocab, self.device)
            if self.decoding.mmi_reverse_dir is not None
            else None
        )
        self._rules: dict[Path | None, VocabularyRules] = {}
        self.rules_for(self.decoding)  # a missing or unreadable blocklist fails the load
        self._lock = threading.Lock()
        self._generator = torch.Generator(device=self.device).manual_seed(0)

    def reseed(self, seed: int) -> None:
        """Restart sampling's random stream: the same contexts in the same batch get the same
        replies again (evaluation decodes a prompt set once per seed)."""
        with self._lock:
            self._generator.manual_seed(seed)

    @property
    def name(self) -> str:
        return self.checkpoint_dir.name

    @property
    def context_turns(self) -> int:
        """How many recent turns this model reads (its recipe's): what a caller should pass."""
        return self.recipe.context_turns

    def encode_context(self, context: Context) -> list[str]:
        """Tokens the model sees, built by the recipe's context rule."""
        turns = [context] if isinstance(context, str) else list(context)
        tokens = self.recipe.model_input(
            [self.processor.tokenize(turn) for turn in turns[-self.context_turns :]]
        )
        if not tokens:
            raise EmptyInputError("the context is empty: there is nothing to reply to")
        return tokens

    def rules_for(self, decoding: DecodingSettings) -> VocabularyRules:
        """What this model's vocabulary rules out under `decoding`'s blocklist (built once per
        blocklist path; OSError when the file cannot be read)."""
        path = decoding.blocklist_path
        if path not in self._rules:
            entries = read_blocklist(path, self.processor) if path is not None else []
            self._rules[path] = VocabularyRules.build(self.vocab, entries)
        return self._rules[path]

    def unknown_fraction(self, text: str) -> float:
        """Share of the words in `text` the model has never seen (1.0 = all unknown)."""
        ids = self.vocab.encode(self.processor.tokenize(text))
        return sum(i == UNK_ID for i in ids) / len(ids) if ids else 1.0

    def reply(self, contexts: Sequence[Context]) -> list[str]:
        return [r.text for r in self.generate(contexts)]

    def generate(
        self, contexts: Sequence[Context], decoding: DecodingSettings | None = None
    ) -> list[Reply]:
        if not contexts:
            return []
        sources = [self.vocab.encode(self.encode_context(c)) for c in contexts]
        return self.generate_ids(sources, decoding)

    def generate_ids(
        self, sources: Sequence[Sequence[int]], decoding: DecodingSettings | None = None
    ) -> list[Reply]:
        """Replies to contexts already encoded with this model's vocabulary: what evaluation
        scores, decoded exactly as served (vocabulary rules, reverse model, seeded sampling)."""
        if not sources:
            return []
        src = pad(sources).to(self.device)
        lengths = torch.tensor([len(s) for s in sources])
        settings = decoding or self.decoding
        with self._lock, torch.inference_mode():
            hyps = decode(
                self.model,
                src,
                lengths,
                settings,
                self.reverse_model,
                self._generator,
                self.rules_for(settings).constraints(settings),
            )
        return [self._to_reply(hyp) for hyp in hyps]

    def attention(self, context: Context) -> tuple[list[str], Reply, list[list[float]]]:
        """Context tokens, the greedy reply, and its attention weights (reply x context)."""
        source = self.encode_context(context)
        ids = self.vocab.encode(source)
        src = torch.tensor([ids], device=self.device)
        with self._lock:
            hyp = greedy_search(
                self.model,
                src,
                torch.tensor([len(ids)]),
                self.decoding.max_length,
                self.rules_for(self.decoding).constraints(self.decoding),
                keep_attention=True,
            )[0]
        return source, self._to_reply(hyp), hyp.attention

    def _to_reply(self, hyp: Hypothesis) -> Reply:
        tokens = self.vocab.decode(hyp.tokens)
        return Reply(render(tokens), tokens, hyp.score)
