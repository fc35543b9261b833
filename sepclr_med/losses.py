"""The SepCLR objective (Louiset et al., ICLR 2024), pure tensors in and out.

Notation follows the project's method reference: ``c`` common head outputs (L2-normalised here),
``s`` salient head outputs (raw, Euclidean), ``s~`` the "teacher" copy of ``s`` whose background
rows are replaced by 0, ``T``/``B`` the target/background rows. With tau = 0.5 every kernel is
``exp(-||delta||^2)``::

    L_C   = align(c1, c2) + unif(c1) + unif(c2)
    L_S   = align(s1[T], s2[T]) + unif(s~1) + unif(s~2)
    L_reg = 1/2 [mean_B ||s1||^2 + mean_B ||s2||^2]
    L_JEM = 1/2 [J(c1, s~1) + J(c2, s~2)]
    L     = L_C + beta_salient L_S + beta_infoless L_reg + lambda_jem L_JEM
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

TERMS = ("common", "salient", "infoless", "jem")


def squared_distances(a: torch.Tensor) -> torch.Tensor:
    """Pairwise squared Euclidean distances of the rows of ``a`` (no square root, so the
    gradient is finite for identical rows)."""
    return (a.unsqueeze(1) - a.unsqueeze(0)).pow(2).sum(-1)


def align(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``mean_i ||a_i - b_i||^2``."""
    return (a - b).pow(2).sum(-1).mean()


def unif(a: torch.Tensor) -> torch.Tensor:
    """``log mean_{i<j} exp(-||a_i - a_j||^2)`` (Wang & Isola's uniformity with t = 1, i.e. tau = 0.5)."""
    n = a.shape[0]
    i, j = torch.triu_indices(n, n, offset=1, device=a.device)
    d2 = squared_distances(a)[i, j]
    return torch.logsumexp(-d2, dim=0) - math.log(d2.numel())


def joint_entropy(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """k-JEM term ``J(a, b) = mean_i log mean_j exp(-||a_i-a_j||^2 - ||b_i-b_j||^2)``, j over
    all rows including ``j = i``. Minimising it maximises a kernel estimate of H(a, b)."""
    d2 = squared_distances(a) + squared_distances(b)
    return (torch.logsumexp(-d2, dim=1) - math.log(a.shape[0])).mean()


def teacher(salient: torch.Tensor, is_target: torch.Tensor) -> torch.Tensor:
    """Copy of ``salient`` with background rows replaced by the information-less point 0
    (an overwrite, so even a non-finite background row becomes exactly 0)."""
    return torch.where(is_target.unsqueeze(1), salient, torch.zeros_like(salient))


class SepCLRLoss(torch.nn.Module):
    """SepCLR loss on the head outputs of two views.

    Parameters
    ----------
    beta_salient : float
        Weight of the salient contrastive term ``L_S``.
    beta_infoless : float
        Weight of the information-less term ``L_reg`` (background salient heads to 0).
    lambda_jem : float
        Weight of the k-JEM independence term ``L_JEM``.

    Examples
    --------
    >>> loss_fn = SepCLRLoss(beta_salient=1.0, beta_infoless=10.0, lambda_jem=10.0)
    >>> c1, c2, s1, s2 = (torch.randn(8, 4) for _ in range(4))
    >>> total, terms = loss_fn(c1, c2, s1, s2, torch.tensor([0, 1] * 4, dtype=torch.bool))
    >>> sorted(terms)
    ['common', 'infoless', 'jem', 'salient']
    """

    def __init__(self, beta_salient: float = 1.0, beta_infoless: float = 10.0, lambda_jem: float = 10.0) -> None:
        super().__init__()
        self.beta_salient = float(beta_salient)
        self.beta_infoless = float(beta_infoless)
        self.lambda_jem = float(lambda_jem)

    def forward(
        self,
        common_1: torch.Tensor,
        common_2: torch.Tensor,
        salient_1: torch.Tensor,
        salient_2: torch.Tensor,
        is_target: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Return ``(total, terms)``; ``terms`` holds the four unweighted terms.

        Raises
        ------
        ValueError
            If the batch holds no background (control) or no target (patient) subject.
        """
        is_target = is_target.to(device=salient_1.device, dtype=torch.bool).reshape(-1)
        if not bool(is_target.any()):
            raise ValueError("SepCLR batch has no target (patient) subject; use stratified batches")
        if bool(is_target.all()):
            raise ValueError("SepCLR batch has no background (control) subject; use stratified batches")
        # the objective is computed in float32 even under autocast
        common_1, common_2, salient_1, salient_2 = (x.float() for x in (common_1, common_2, salient_1, salient_2))
        c1, c2 = F.normalize(common_1, dim=1), F.normalize(common_2, dim=1)
        t1, t2 = teacher(salient_1, is_target), teacher(salient_2, is_target)
        background = ~is_target
        terms = {
            "common": align(c1, c2) + unif(c1) + unif(c2),
            "salient": align(salient_1[is_target], salient_2[is_target]) + unif(t1) + unif(t2),
            "infoless": 0.5
            * (salient_1[background].pow(2).sum(-1).mean() + salient_2[background].pow(2).sum(-1).mean()),
            "jem": 0.5 * (joint_entropy(c1, t1) + joint_entropy(c2, t2)),
        }
        total = (
            terms["common"]
            + self.beta_salient * terms["salient"]
            + self.beta_infoless * terms["infoless"]
            + self.lambda_jem * terms["jem"]
        )
        return total, terms


def distance_correlation_sq(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-9) -> torch.Tensor:
    """Squared (biased) distance correlation of the rows of ``x`` and ``y``, differentiable.

    0 when the samples are independent in the population; used as an optional penalty between
    the common and salient *reps* of patients, to reduce leakage of patient-only information
    into the common space.
    """

    def centred(a):
        d = torch.sqrt(squared_distances(a.float()) + eps)
        return d - d.mean(0, keepdim=True) - d.mean(1, keepdim=True) + d.mean()

    a, b = centred(x), centred(y)
    return (a * b).mean() / torch.sqrt((a * a).mean() * (b * b).mean() + eps)
