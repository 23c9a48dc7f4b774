import pytest
import torch

from nlp.attention import AttentionKind, LuongAttention


@pytest.mark.parametrize("kind", ["dot", "general", "concat"])
def test_attention_gives_zero_weight_to_padding(kind: AttentionKind) -> None:
    torch.manual_seed(0)
    attention = LuongAttention(kind, 8)
    memory = torch.randn(2, 5, 8)
    pad_mask = torch.tensor([[False, False, False, True, True], [False] * 5])
    context, weights = attention(
        torch.randn(2, 3, 8), attention.prepare_keys(memory), memory, pad_mask
    )
    assert context.shape == (2, 3, 8)
    assert torch.all(weights[0, :, 3:] == 0)
    assert torch.allclose(weights.sum(-1), torch.ones(2, 3))


@pytest.mark.parametrize("kind", ["dot", "general", "concat"])
def test_attention_output_ignores_what_padding_holds(kind: AttentionKind) -> None:
    torch.manual_seed(0)
    attention = LuongAttention(kind, 8)
    query = torch.randn(1, 4, 8)
    memory = torch.randn(1, 6, 8)
    pad_mask = torch.tensor([[False, False, False, False, True, True]])
    changed = memory.clone()
    changed[:, 4:] = torch.randn(1, 2, 8) * 100
    a, _ = attention(query, attention.prepare_keys(memory), memory, pad_mask)
    b, _ = attention(query, attention.prepare_keys(changed), changed, pad_mask)
    assert torch.equal(a, b)
