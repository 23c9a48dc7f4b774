"""Luong global attention (Luong et al. 2015): dot, general and concat scores, masked at padding."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

AttentionKind = Literal["dot", "general", "concat"]


class LuongAttention(nn.Module):
    """Scores every query step against every source position in one batched product.

    Keys are prepared once per source (`prepare_keys`) so a decoder step costs one bmm, not a
    projection of the whole memory bank again.
    """

    def __init__(self, kind: AttentionKind, size: int) -> None:
        super().__init__()
        self.kind = kind
        if kind == "general":
            self.key_proj = nn.Linear(size, size, bias=False)
        elif kind == "concat":
            self.key_proj = nn.Linear(size, size, bias=False)
            self.query_proj = nn.Linear(size, size, bias=True)
            self.v = nn.Linear(size, 1, bias=False)
        elif kind != "dot":
            raise ValueError(f"unknown attention {kind!r}")

    def prepare_keys(self, memory: Tensor) -> Tensor:
        """memory: (batch, src_len, size) -> keys: (batch, src_len, size)."""
        return memory if self.kind == "dot" else self.key_proj(memory)

    def forward(
        self, query: Tensor, keys: Tensor, values: Tensor, pad_mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """query: (batch, trg_len, size); keys, values: (batch, src_len, size);
        pad_mask: (batch, src_len), True at padding.
        -> context: (batch, trg_len, size), weights: (batch, trg_len, src_len), zero at padding.
        """
        if self.kind == "concat":
            hidden = torch.tanh(self.query_proj(query).unsqueeze(2) + keys.unsqueeze(1))
            scores = self.v(hidden).squeeze(-1)
        else:
            scores = torch.bmm(query, keys.transpose(1, 2))
        scores = scores.masked_fill(pad_mask.unsqueeze(1), float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        return torch.bmm(weights, values), weights
