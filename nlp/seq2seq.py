"""The GRU (or LSTM) encoder-decoder with Luong attention.

Encoder: embedding -> bidirectional RNN over packed sequences -> per-position projection 2H -> H.
Bridge:  each decoder layer starts from ITS encoder layer's two final directions (not layer 0's).
Decoder: RNN over the whole target in one call (no input feeding, so teacher forcing needs no
         Python loop), then attention for all steps at once, tanh combination, output projection.
A decoding step is the same `Decoder.forward` with a target of length 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from config import ModelSettings
from nlp.attention import LuongAttention
from nlp.vocabulary import PAD_ID

# GRU state is one tensor; LSTM state is (h, c). Both: (num_layers, batch, hidden).
Hidden = Tensor | tuple[Tensor, Tensor]


@dataclass
class EncoderMemory:
    """What the decoder attends to; rows can be reordered/expanded for beam search."""

    values: Tensor  # (batch, src_len, hidden)
    keys: Tensor  # (batch, src_len, hidden), attention-prepared values
    pad_mask: Tensor  # (batch, src_len), True at padding

    def index_select(self, index: Tensor) -> EncoderMemory:
        return EncoderMemory(
            self.values.index_select(0, index),
            self.keys.index_select(0, index),
            self.pad_mask.index_select(0, index),
        )


def select_hidden(hidden: Hidden, index: Tensor) -> Hidden:
    """Rows of a decoder state (batch is dim 1)."""
    if isinstance(hidden, tuple):
        return (hidden[0].index_select(1, index), hidden[1].index_select(1, index))
    return hidden.index_select(1, index)


def _rnn(cfg: ModelSettings, input_size: int, bidirectional: bool) -> nn.RNNBase:
    cls = nn.GRU if cfg.cell == "gru" else nn.LSTM
    return cls(
        input_size,
        cfg.hidden_size,
        num_layers=cfg.num_layers,
        dropout=cfg.dropout if cfg.num_layers > 1 else 0.0,
        bidirectional=bidirectional,
        batch_first=True,
    )


class Encoder(nn.Module):
    def __init__(self, cfg: ModelSettings, embedding: nn.Embedding) -> None:
        super().__init__()
        self.embedding = embedding
        self.dropout = nn.Dropout(cfg.dropout)
        self.rnn = _rnn(cfg, cfg.embedding_dim, bidirectional=True)
        self.merge = nn.Linear(2 * cfg.hidden_size, cfg.hidden_size)

    def forward(self, src: Tensor, lengths: Tensor) -> tuple[Tensor, Hidden]:
        """src: (batch, src_len), lengths: (batch,) -> outputs (batch, src_len, hidden) and
        final states (num_layers * 2, batch, hidden), read at each row's true length."""
        embedded = self.dropout(self.embedding(src))
        packed = pack_padded_sequence(
            embedded, lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        packed_out, final = self.rnn(packed)
        outputs, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=src.size(1))
        return self.merge(outputs), final


class Bridge(nn.Module):
    """Decoder layer l starts from tanh(W [fwd_l; bwd_l]) of encoder layer l."""

    def __init__(self, cfg: ModelSettings) -> None:
        super().__init__()
        self.num_layers = cfg.num_layers
        self.proj = nn.Linear(2 * cfg.hidden_size, cfg.hidden_size)
        self.cell_proj = (
            nn.Linear(2 * cfg.hidden_size, cfg.hidden_size) if cfg.cell == "lstm" else None
        )

    def _join(self, state: Tensor, proj: nn.Linear) -> Tensor:
        # PyTorch orders the final states layer by layer: (layer0 fwd, layer0 bwd, layer1 fwd, ...).
        layers = state.view(self.num_layers, 2, state.size(1), state.size(2))
        return torch.tanh(proj(torch.cat([layers[:, 0], layers[:, 1]], dim=-1)))

    def forward(self, final: Hidden) -> Hidden:
        if isinstance(final, tuple):
            assert self.cell_proj is not None
            return (self._join(final[0], self.proj), self._join(final[1], self.cell_proj))
        return self._join(final, self.proj)


class Decoder(nn.Module):
    def __init__(self, cfg: ModelSettings, embedding: nn.Embedding, vocab_size: int) -> None:
        super().__init__()
        self.embedding = embedding
        self.dropout = nn.Dropout(cfg.dropout)
        self.rnn = _rnn(cfg, cfg.embedding_dim, bidirectional=False)
        self.attention = LuongAttention(cfg.attention, cfg.hidden_size)
        # With tied embeddings the attentional vector lives in embedding space.
        out_size = cfg.embedding_dim if cfg.tie_embeddings else cfg.hidden_size
        self.combine = nn.Linear(2 * cfg.hidden_size, out_size)
        self.output = nn.Linear(out_size, vocab_size)
        if cfg.tie_embeddings:
            self.output.weight = embedding.weight

    def forward(
        self, trg_in: Tensor, hidden: Hidden, memory: EncoderMemory, keep: Tensor | None = None
    ) -> tuple[Tensor, Hidden, Tensor]:
        """trg_in: (batch, trg_len) -> logits (batch, trg_len, vocab), new state, attention
        weights (batch, trg_len, src_len). With `keep` (batch, trg_len) bool, logits are returned
        only for kept positions, shape (n_kept, vocab): training skips the padding's projection."""
        embedded = self.dropout(self.embedding(trg_in))
        rnn_out, hidden = self.rnn(embedded, hidden)
        context, weights = self.attention(rnn_out, memory.keys, memory.values, memory.pad_mask)
        attentional = torch.tanh(self.combine(torch.cat([rnn_out, context], dim=-1)))
        if keep is not None:
            attentional = attentional[keep]
        return self.output(self.dropout(attentional)), hidden, weights


class Seq2Seq(nn.Module):
    def __init__(self, cfg: ModelSettings, vocab_size: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.vocab_size = vocab_size
        # One vocabulary and embedding for both sides: contexts and replies are one language.
        self.embedding = nn.Embedding(vocab_size, cfg.embedding_dim, padding_idx=PAD_ID)
        self.encoder = Encoder(cfg, self.embedding)
        self.bridge = Bridge(cfg)
        self.decoder = Decoder(cfg, self.embedding, vocab_size)

    def encode(self, src: Tensor, lengths: Tensor) -> tuple[EncoderMemory, Hidden]:
        """src: (batch, src_len) -> memory for attention and the decoder's initial state."""
        outputs, final = self.encoder(src, lengths)
        keys = self.decoder.attention.prepare_keys(outputs)
        # From the lengths, not the token ids: what padding holds can never leak into attention.
        positions = torch.arange(src.size(1), device=src.device)
        pad_mask = positions.unsqueeze(0) >= lengths.to(src.device).unsqueeze(1)
        return EncoderMemory(outputs, keys, pad_mask), self.bridge(final)

    def forward(
        self, src: Tensor, lengths: Tensor, trg_in: Tensor, keep: Tensor | None = None
    ) -> Tensor:
        """Teacher-forced logits: (batch, trg_len, vocab), or (n_kept, vocab) with `keep`."""
        memory, hidden = self.encode(src, lengths)
        logits: Tensor
        logits, _, _ = self.decoder(trg_in, hidden, memory, keep)
        return logits

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def extend_vocabulary(model: Seq2Seq, new_size: int) -> Seq2Seq:
    """Grow the shared embedding (and output layer) to `new_size` rows, keeping every old row.

    New rows start like a fresh embedding (small normal noise) and a zero output bias, so old
    words behave exactly as before until fine-tuning moves them.
    """
    old_size = model.vocab_size
    if new_size < old_size:
        raise ValueError("a vocabulary can only grow")
    if new_size == old_size:
        return model
    grown = Seq2Seq(model.cfg, new_size).to(next(model.parameters()).device)
    state = model.state_dict()
    with torch.no_grad():
        grown_state = grown.state_dict()
        for name, tensor in state.items():
            target = grown_state[name]
            if target.shape == tensor.shape:
                target.copy_(tensor)
            else:  # the vocabulary axis is dim 0 for the embedding, output weight and bias
                target[:old_size].copy_(tensor)
                if name.endswith("output.bias"):
                    target[old_size:].zero_()
    return grown
