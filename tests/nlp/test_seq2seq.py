import pytest
import torch
import torch.nn.functional as F

from config import ModelSettings
from nlp.seq2seq import Seq2Seq, extend_vocabulary
from nlp.vocabulary import PAD_ID

VOCAB = 50


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    src = torch.randint(5, VOCAB, (3, 7))
    src[1, 4:] = PAD_ID
    src[2, 2:] = PAD_ID
    lengths = torch.tensor([7, 4, 2])
    trg_in = torch.randint(5, VOCAB, (3, 6))
    trg_out = torch.randint(5, VOCAB, (3, 6))
    trg_out[2, 3:] = PAD_ID
    return src, lengths, trg_in, trg_out


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("attention", ["dot", "general", "concat"])
def test_one_call_teacher_forcing_equals_a_step_by_step_loop(cell: str, attention: str) -> None:
    torch.manual_seed(0)
    model = Seq2Seq(
        ModelSettings(
            cell=cell, attention=attention, num_layers=2, embedding_dim=16, hidden_size=24
        ),
        VOCAB,
    ).eval()
    src, lengths, trg_in, trg_out = _batch()
    keep = trg_out.ne(PAD_ID)
    one_call = F.cross_entropy(model(src, lengths, trg_in, keep), trg_out[keep])

    memory, hidden = model.encode(src, lengths)
    step_logits = []
    for t in range(trg_in.size(1)):
        logits, hidden, _ = model.decoder(trg_in[:, t : t + 1], hidden, memory)
        step_logits.append(logits)
    looped = F.cross_entropy(torch.cat(step_logits, dim=1)[keep], trg_out[keep])
    assert abs(one_call.item() - looped.item()) / looped.item() < 1e-5


def test_encoder_output_does_not_depend_on_padding_content() -> None:
    torch.manual_seed(0)
    model = Seq2Seq(ModelSettings(embedding_dim=16, hidden_size=16), VOCAB).eval()
    src, lengths, trg_in, _ = _batch()
    other = src.clone()
    other[1, 4:] = 7  # garbage where the padding was; lengths still say 4
    with torch.no_grad():
        a = model(src, lengths, trg_in)
        b = model(other, lengths, trg_in)
    assert torch.allclose(a[1], b[1], atol=1e-6)


def test_bridge_builds_each_decoder_layer_from_its_own_encoder_layer() -> None:
    torch.manual_seed(0)
    model = Seq2Seq(ModelSettings(num_layers=3, embedding_dim=8, hidden_size=8), VOCAB)
    final = torch.randn(3 * 2, 4, 8)  # (layers * directions, batch, hidden)
    base = model.bridge(final)
    changed = final.clone()
    changed[2:4] += 1.0  # layer 1's forward and backward states
    out = model.bridge(changed)
    assert torch.equal(out[0], base[0]) and torch.equal(out[2], base[2])
    assert not torch.allclose(out[1], base[1])


def test_tied_output_layer_shares_the_embedding() -> None:
    model = Seq2Seq(ModelSettings(tie_embeddings=True, embedding_dim=16, hidden_size=24), VOCAB)
    assert model.decoder.output.weight is model.embedding.weight
    untied = Seq2Seq(ModelSettings(tie_embeddings=False, embedding_dim=16, hidden_size=24), VOCAB)
    assert untied.decoder.output.weight is not untied.embedding.weight


def test_vocabulary_extension_keeps_every_old_row() -> None:
    torch.manual_seed(0)
    model = Seq2Seq(ModelSettings(embedding_dim=16, hidden_size=16, tie_embeddings=False), VOCAB)
    grown = extend_vocabulary(model, VOCAB + 10)
    assert grown.embedding.weight.shape == (VOCAB + 10, 16)
    assert torch.equal(grown.embedding.weight[:VOCAB], model.embedding.weight)
    assert torch.equal(grown.decoder.output.weight[:VOCAB], model.decoder.output.weight)
    assert torch.equal(grown.decoder.output.bias[:VOCAB], model.decoder.output.bias)
    weights = "weight_hh_l0"
    assert torch.equal(
        grown.encoder.rnn.get_parameter(weights), model.encoder.rnn.get_parameter(weights)
    )
    with pytest.raises(ValueError):
        extend_vocabulary(model, VOCAB - 1)
