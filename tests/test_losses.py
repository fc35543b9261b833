"""The SepCLR loss equals a slow, literal transcription of the method page's formulas."""

from __future__ import annotations

import math

import pytest
import torch

from sepclr_med.losses import SepCLRLoss


def slow_reference(c1, c2, s1, s2, y, beta_s, beta_reg, lam):
    """Formulas of the method page, written with Python loops (float64)."""
    n = len(y)

    def sq(u, v):
        return float(sum((ui - vi) ** 2 for ui, vi in zip(u, v, strict=True)))

    def normalise(rows):
        return [[x / math.sqrt(sum(v * v for v in r)) for x in r] for r in rows]

    def align(a, b):
        return sum(sq(a[i], b[i]) for i in range(len(a))) / len(a)

    def unif(a):
        pairs = [math.exp(-sq(a[i], a[j])) for i in range(len(a)) for j in range(i + 1, len(a))]
        return math.log(sum(pairs) / len(pairs))

    def J(a, b):
        return (
            sum(
                math.log(sum(math.exp(-sq(a[i], a[j])) * math.exp(-sq(b[i], b[j])) for j in range(n)) / n)
                for i in range(n)
            )
            / n
        )

    c1, c2 = normalise(c1), normalise(c2)
    t1 = [s1[i] if y[i] else [0.0] * len(s1[i]) for i in range(n)]
    t2 = [s2[i] if y[i] else [0.0] * len(s2[i]) for i in range(n)]
    T = [i for i in range(n) if y[i]]
    B = [i for i in range(n) if not y[i]]
    L_C = align(c1, c2) + 2 * 0.5 * (unif(c1) + unif(c2))
    L_S = align([s1[i] for i in T], [s2[i] for i in T]) + 2 * 0.5 * (unif(t1) + unif(t2))
    L_reg = 0.5 * (
        sum(sq(s1[i], [0] * len(s1[i])) for i in B) / len(B) + sum(sq(s2[i], [0] * len(s2[i])) for i in B) / len(B)
    )
    L_JEM = 0.5 * (J(c1, t1) + J(c2, t2))
    total = L_C + beta_s * L_S + beta_reg * L_reg + lam * L_JEM
    return total, {"common": L_C, "salient": L_S, "infoless": L_reg, "jem": L_JEM}


@pytest.mark.parametrize(
    "n, dc, ds, weights",
    [
        (4, 3, 2, (1.0, 10.0, 10.0)),
        (9, 8, 5, (1.0, 100.0, 10.0)),
        (16, 32, 32, (1000.0, 1000.0, 10.0)),
        (7, 4, 6, (0.5, 0.0, 0.0)),
    ],
)
def test_loss_matches_the_formulas(n, dc, ds, weights):
    g = torch.Generator().manual_seed(n)
    c1, c2 = torch.randn(n, dc, generator=g), torch.randn(n, dc, generator=g)
    s1, s2 = 0.5 * torch.randn(n, ds, generator=g), 0.5 * torch.randn(n, ds, generator=g)
    y = torch.zeros(n, dtype=torch.bool)
    y[torch.randperm(n, generator=g)[: n // 2]] = True
    total, terms = SepCLRLoss(*weights)(c1, c2, s1, s2, y)
    ref_total, ref_terms = slow_reference(c1.tolist(), c2.tolist(), s1.tolist(), s2.tolist(), y.tolist(), *weights)
    for key, value in ref_terms.items():
        assert terms[key].item() == pytest.approx(value, abs=1e-5, rel=1e-5), key
    assert total.item() == pytest.approx(ref_total, abs=1e-5, rel=1e-5)


def test_background_salient_rows_get_gradient_only_from_infoless():
    g = torch.Generator().manual_seed(0)
    tensors = [torch.randn(6, 3, generator=g, requires_grad=True) for _ in range(4)]
    y = torch.tensor([0, 0, 0, 1, 1, 1], dtype=torch.bool)
    total, _ = SepCLRLoss(beta_salient=1.0, beta_infoless=0.0, lambda_jem=10.0)(*tensors, y)
    total.backward()
    s1 = tensors[2]
    assert torch.all(s1.grad[:3] == 0)  # teacher rows are constants
    assert torch.any(s1.grad[3:] != 0) and torch.isfinite(s1.grad).all()


def test_identical_rows_give_finite_gradients():
    c = torch.ones(4, 3, requires_grad=True)
    s = torch.zeros(4, 2, requires_grad=True)
    total, _ = SepCLRLoss()(c, c, s, s, torch.tensor([0, 0, 1, 1], dtype=torch.bool))
    total.backward()
    assert torch.isfinite(total) and torch.isfinite(c.grad).all() and torch.isfinite(s.grad).all()


@pytest.mark.parametrize("labels, missing", [([1, 1, 1, 1], "background"), ([0, 0, 0], "target")])
def test_missing_group_raises(labels, missing):
    n = len(labels)
    x = torch.randn(n, 3)
    with pytest.raises(ValueError, match=missing):
        SepCLRLoss()(x, x, x, x, torch.tensor(labels, dtype=torch.bool))
