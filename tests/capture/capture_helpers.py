"""Independent references and tiny models for the capture tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def loop_grads(model: nn.Module, loss_fn, inputs: Tensor, targets: Tensor) -> dict[str, Tensor]:
    """The microbatch reference: one ``autograd.grad`` per example."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = [p for n, p in model.named_parameters() if p.requires_grad]
    rows = []
    for i in range(inputs.shape[0]):
        loss = loss_fn(model(inputs[i : i + 1]), targets[i : i + 1])
        rows.append(torch.autograd.grad(loss, params, allow_unused=True))
    return {
        n: torch.stack([r[j] if r[j] is not None else torch.zeros_like(params[j]) for r in rows])
        for j, n in enumerate(names)
    }


def assert_grads_close(got: dict[str, Tensor], want: dict[str, Tensor], dtype: torch.dtype) -> None:
    """Relative error per parameter <= 1e-10 (float64) or 1e-5 (float32), in the Frobenius norm."""
    assert got.keys() == want.keys()
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    for k in want:
        assert got[k].shape == want[k].shape, k
        err = (got[k] - want[k]).norm() / want[k].norm().clamp_min(1e-30)
        assert err <= tol, f"{k}: relative error {err:.3e}"


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class CNN(nn.Module):
    """Conv1d and Conv2d with stride, padding (int and "same"), dilation and groups."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(2, 4, 3, stride=2, padding=1)
        self.c2 = nn.Conv2d(4, 6, 3, padding=2, dilation=2, groups=2)
        self.c3 = nn.Conv2d(6, 4, (2, 3), padding="same", bias=False)
        self.d1 = nn.Conv1d(4, 4, 3, stride=2, padding=1, groups=4)
        self.d2 = nn.Conv1d(4, 3, 2, dilation=2, padding="same")
        self.fc = nn.Linear(3, 3)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.c1(x))  # [B, 4, 4, 4]
        h = torch.tanh(self.c2(h))
        h = torch.relu(self.c3(h))  # [B, 4, 4, 4]
        h = h.flatten(2)  # [B, 4, 16]
        h = torch.tanh(self.d1(h))
        h = self.d2(h).mean(-1)  # [B, 3]
        return self.fc(h)


class Attention(nn.Module):
    """A custom attention block with a cross-attention MHA (separate q/k/v slices) and need_weights."""

    def __init__(self, d: int = 8) -> None:
        super().__init__()
        self.mha = nn.MultiheadAttention(d, 2, batch_first=False)
        self.ln = nn.LayerNorm(d)

    def forward(self, x: Tensor) -> Tensor:
        xt = x.transpose(0, 1)  # [T, B, D]
        mem = torch.tanh(xt)
        y, w = self.mha(xt, mem, mem)
        return self.ln(x + y.transpose(0, 1) + w.sum(-1, keepdim=True))


class TokenModel(nn.Module):
    """Embedding + positional Embedding + TransformerEncoderLayer + custom attention + GroupNorm + head."""

    def __init__(self, vocab: int = 11, d: int = 8, t: int = 5, tie: bool = False) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, d, padding_idx=0)
        self.pos = nn.Embedding(t, d)
        self.enc = nn.TransformerEncoderLayer(d, 2, 16, dropout=0.0, batch_first=True)
        self.att = Attention(d)
        self.gn = nn.GroupNorm(2, d)
        self.head = nn.Linear(d, vocab, bias=False)
        if tie:
            self.head.weight = self.emb.weight

    def forward(self, ids: Tensor) -> Tensor:
        b, t = ids.shape
        h = self.emb(ids) + self.pos(torch.arange(t).expand(b, t))  # [B, T, D]
        h = self.enc(h, src_mask=nn.Transformer.generate_square_subsequent_mask(t))
        h = self.att(h)
        h = self.gn(h.transpose(1, 2)).transpose(1, 2)  # [B, T, D]
        return self.head(h)  # [B, T, V]


def token_loss(logits: Tensor, targets: Tensor) -> Tensor:
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())
