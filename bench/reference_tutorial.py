"""The PyTorch Chatbot Tutorial's model and training step, re-implemented as the speed baseline.

Kept faithful on purpose (defects included): the decoder runs one Python-loop step per target
position, attention is dot-product over (time, batch) tensors without a padding mask, the loss is
a masked NLL per step, batches are random (no length bucketing), the decoder starts from the
encoder's final hidden state sliced as `encoder_hidden[:decoder.n_layers]`. Do not use this code
for anything but measuring against it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nlp.datasets import EncodedPair
from nlp.vocabulary import EOS_ID, PAD_ID, SOS_ID


class EncoderRNN(nn.Module):
    def __init__(self, hidden: int, embedding: nn.Embedding, n_layers: int, dropout: float) -> None:
        super().__init__()
        self.embedding = embedding
        self.gru = nn.GRU(hidden, hidden, n_layers, dropout=dropout, bidirectional=True)

    def forward(self, input_seq: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        embedded = self.embedding(input_seq)
        packed = nn.utils.rnn.pack_padded_sequence(embedded, lengths.cpu())
        outputs, hidden = self.gru(packed)
        outputs, _ = nn.utils.rnn.pad_packed_sequence(outputs)
        hidden_size = outputs.size(2) // 2
        return outputs[:, :, :hidden_size] + outputs[:, :, hidden_size:], hidden


class LuongAttnDecoderRNN(nn.Module):
    def __init__(
        self, embedding: nn.Embedding, hidden: int, vocab: int, n_layers: int, dropout: float
    ) -> None:
        super().__init__()
        self.n_layers = n_layers
        self.embedding = embedding
        self.embedding_dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(hidden, hidden, n_layers, dropout=dropout)
        self.concat = nn.Linear(hidden * 2, hidden)
        self.out = nn.Linear(hidden, vocab)

    def forward(
        self, input_step: Tensor, last_hidden: Tensor, encoder_outputs: Tensor
    ) -> tuple[Tensor, Tensor]:
        embedded = self.embedding_dropout(self.embedding(input_step))
        rnn_output, hidden = self.gru(embedded, last_hidden)
        attn_energies = torch.sum(rnn_output * encoder_outputs, dim=2).t()  # dot attention
        attn_weights = F.softmax(attn_energies, dim=1).unsqueeze(1)
        context = attn_weights.bmm(encoder_outputs.transpose(0, 1)).squeeze(1)
        concat_output = torch.tanh(self.concat(torch.cat((rnn_output.squeeze(0), context), 1)))
        return F.softmax(self.out(concat_output), dim=1), hidden


class TutorialModel:
    """Encoder, decoder and their two Adam optimisers (decoder LR = 5 x encoder LR)."""

    def __init__(
        self,
        vocab: int,
        hidden: int = 500,
        n_layers: int = 2,
        dropout: float = 0.1,
        lr: float = 1e-4,
        decoder_lr_ratio: float = 5.0,
        clip: float = 50.0,
    ) -> None:
        embedding = nn.Embedding(vocab, hidden)
        self.encoder = EncoderRNN(hidden, embedding, n_layers, dropout)
        self.decoder = LuongAttnDecoderRNN(embedding, hidden, vocab, n_layers, dropout)
        self.encoder_optimizer = torch.optim.Adam(self.encoder.parameters(), lr=lr)
        self.decoder_optimizer = torch.optim.Adam(
            self.decoder.parameters(), lr=lr * decoder_lr_ratio
        )
        self.clip = clip

    def train_step(self, batch: TutorialBatch) -> tuple[float, int]:
        """One teacher-forced step (teacher_forcing_ratio = 1.0): loss per token, target tokens."""
        self.encoder.train()
        self.decoder.train()
        self.encoder_optimizer.zero_grad()
        self.decoder_optimizer.zero_grad()
        encoder_outputs, encoder_hidden = self.encoder(batch.inputs, batch.lengths)
        decoder_input = torch.full((1, batch.inputs.size(1)), SOS_ID, dtype=torch.long)
        decoder_hidden = encoder_hidden[: self.decoder.n_layers]
        loss = torch.zeros(())
        print_losses, n_totals = [], 0
        for t in range(batch.max_target_len):
            decoder_output, decoder_hidden = self.decoder(
                decoder_input, decoder_hidden, encoder_outputs
            )
            decoder_input = batch.target[t].view(1, -1)
            mask_loss, n_total = _mask_nll_loss(decoder_output, batch.target[t], batch.mask[t])
            loss = loss + mask_loss
            print_losses.append(mask_loss.item() * n_total)
            n_totals += n_total
        loss.backward()
        nn.utils.clip_grad_norm_(self.encoder.parameters(), self.clip)
        nn.utils.clip_grad_norm_(self.decoder.parameters(), self.clip)
        self.encoder_optimizer.step()
        self.decoder_optimizer.step()
        return sum(print_losses) / n_totals, n_totals

    @torch.no_grad()
    def mean_loss(self, batches: Sequence[TutorialBatch]) -> float:
        """Token-level cross-entropy, comparable with `nlp.training.mean_loss`."""
        self.encoder.eval()
        self.decoder.eval()
        total, tokens = 0.0, 0
        for batch in batches:
            encoder_outputs, encoder_hidden = self.encoder(batch.inputs, batch.lengths)
            decoder_input = torch.full((1, batch.inputs.size(1)), SOS_ID, dtype=torch.long)
            decoder_hidden = encoder_hidden[: self.decoder.n_layers]
            for t in range(batch.max_target_len):
                out, decoder_hidden = self.decoder(decoder_input, decoder_hidden, encoder_outputs)
                decoder_input = batch.target[t].view(1, -1)
                mask_loss, n = _mask_nll_loss(out, batch.target[t], batch.mask[t])
                total += mask_loss.item() * n
                tokens += n
        return total / max(tokens, 1)


def _mask_nll_loss(inp: Tensor, target: Tensor, mask: Tensor) -> tuple[Tensor, int]:
    n_total = int(mask.sum())
    cross_entropy = -torch.log(torch.gather(inp, 1, target.view(-1, 1)).squeeze(1))
    return cross_entropy.masked_select(mask).mean(), n_total


class TutorialBatch:
    """(time, batch) tensors, inputs sorted by length as the tutorial's `batch2TrainData` does."""

    def __init__(self, pairs: Sequence[EncodedPair]) -> None:
        pairs = sorted(pairs, key=lambda p: len(p.src), reverse=True)
        src = [p.src for p in pairs]
        trg = [[*p.trg, EOS_ID] for p in pairs]
        self.lengths = torch.tensor([len(s) for s in src])
        self.inputs = _zero_pad(src)
        self.target = _zero_pad(trg)
        self.mask = self.target.ne(PAD_ID)
        self.max_target_len = self.target.size(0)


def _zero_pad(seqs: Sequence[Sequence[int]]) -> Tensor:
    width = max(len(s) for s in seqs)
    return torch.tensor([list(s) + [PAD_ID] * (width - len(s)) for s in seqs]).t().contiguous()


def random_batches(
    pairs: Sequence[EncodedPair], batch_size: int, count: int, seed: int
) -> list[TutorialBatch]:
    """The tutorial samples each batch at random from all pairs."""
    rng = random.Random(seed)
    return [TutorialBatch(rng.sample(list(pairs), batch_size)) for _ in range(count)]
