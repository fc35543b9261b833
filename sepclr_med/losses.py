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

On top of the paper's terms, one option against leakage of patient-only information into the
common space (:class:`SepCLRObjective` assembles the whole objective a training step minimises):

Options against leakage of patient-only information into the common space.

``independence_penalty``: squared distance correlation between the patients' common reps and
their salient reps, with the salient reps held fixed (detached). The salient rep is the model's own
estimate of the patient-only variation; pushing only the common encoder away from it removes that
variation from the common space without giving the salient encoder an easy way out (emptying
itself), which is what a two-sided penalty did at large weights.

``LeakageAdversary``: a linear regressor tries to predict the patients' salient reps from their
(L2-normalised) common reps; a gradient-reversal layer makes the common encoder work against it.
If the salient rep carries the subtype and the common rep lets a linear map recover the salient
rep, the common rep leaks the subtype: the adversary removes exactly that linear predictability.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

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


def rows(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x[mask]`` without waiting for the device when ``mask`` is on the host (the training
    loop's labels): the row numbers are found on the host and copied asynchronously."""
    index = mask.reshape(-1).nonzero().squeeze(1)
    return x.index_select(0, index.to(x.device, non_blocking=True))


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
        is_target = is_target.reshape(-1).bool()  # host labels: these checks wait for no device
        if not bool(is_target.any()):
            raise ValueError("SepCLR batch has no target (patient) subject; use stratified batches")
        if bool(is_target.all()):
            raise ValueError("SepCLR batch has no background (control) subject; use stratified batches")
        background = ~is_target
        on_device = is_target.to(salient_1.device, non_blocking=True)
        # the objective is computed in float32 even under autocast
        common_1, common_2, salient_1, salient_2 = (x.float() for x in (common_1, common_2, salient_1, salient_2))
        c1, c2 = F.normalize(common_1, dim=1), F.normalize(common_2, dim=1)
        t1, t2 = teacher(salient_1, on_device), teacher(salient_2, on_device)
        terms = {
            "common": align(c1, c2) + unif(c1) + unif(c2),
            "salient": align(rows(salient_1, is_target), rows(salient_2, is_target)) + unif(t1) + unif(t2),
            "infoless": 0.5
            * (rows(salient_1, background).pow(2).sum(-1).mean() + rows(salient_2, background).pow(2).sum(-1).mean()),
            "jem": 0.5 * (joint_entropy(c1, t1) + joint_entropy(c2, t2)),
        }
        total = (
            terms["common"]
            + self.beta_salient * terms["salient"]
            + self.beta_infoless * terms["infoless"]
            + self.lambda_jem * terms["jem"]
        )
        return total, terms


def distance_correlation_sq(
    x: torch.Tensor, y: torch.Tensor, eps: float = 1e-9, bias_corrected: bool = False
) -> torch.Tensor:
    """Squared distance correlation of the rows of ``x`` and ``y``: the project's one estimator.

    0 when the samples are independent in the population; it sees non-linear dependence.

    Parameters
    ----------
    x, y : torch.Tensor
        ``(n, p)`` and ``(n, q)`` samples of two variables.
    eps : float
        Added under the square root of the distances (a finite gradient for identical rows) and
        to the denominator; 0 for an exact value.
    bias_corrected : bool
        False: the V-statistic with double-centred distances (Székely, Rizzo & Bakirov, 2007),
        in [0, 1] and smooth: the training penalty between patients' common and salient reps.
        True: the U-centred, bias-corrected estimator (Székely & Rizzo, 2014), n >= 4, which does
        not drift above 0 for independent samples of small size and may be slightly negative:
        what :func:`sepclr_med.evaluation.dependence.distance_correlation` reports.
    """
    n = len(x)

    def centred(a):
        a = a.reshape(n, -1)
        d = torch.sqrt(squared_distances(a if a.dtype == torch.float64 else a.float()) + eps)
        if not bias_corrected:
            return d - d.mean(0, keepdim=True) - d.mean(1, keepdim=True) + d.mean()
        u = d - d.sum(0, keepdim=True) / (n - 2) - d.sum(1, keepdim=True) / (n - 2) + d.sum() / ((n - 1) * (n - 2))
        return u.fill_diagonal_(0.0)

    a, b = centred(x), centred(y)
    if not bias_corrected:
        return (a * b).mean() / torch.sqrt((a * a).mean() * (b * b).mean() + eps)
    scale = n * (n - 3)
    vx, vy = (a * a).sum() / scale, (b * b).sum() / scale
    return (a * b).sum() / scale / (torch.sqrt(vx * vy) + eps)


def independence_penalty(common: torch.Tensor, salient: torch.Tensor) -> torch.Tensor:
    """dCor² between ``common`` and ``salient`` rows (patients' reps); gradient to ``common`` only."""
    return distance_correlation_sq(common, salient.detach())


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.scale * grad, None


def reverse_gradient(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Identity forward; multiplies the gradient by ``-scale`` backward."""
    return _Reverse.apply(x, scale)


class LeakageAdversary(nn.Module):
    """Linear predictor of salient reps from common reps, trained through gradient reversal.

    Parameters
    ----------
    common_dim, salient_dim : int
        Rep sizes.
    """

    def __init__(self, common_dim: int, salient_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(common_dim, salient_dim)

    def forward(self, common: torch.Tensor, salient: torch.Tensor) -> torch.Tensor:
        """Explained fraction of the (detached, standardised) salient reps: minimised by the
        adversary's own parameters, maximised (through the reversal) by the common encoder."""
        target = salient.detach().float()
        target = (target - target.mean(0)) / (target.std(0) + 1e-6)
        predicted = self.linear(reverse_gradient(F.normalize(common.float(), dim=1)))
        return 1.0 - F.mse_loss(predicted, target) / target.var(0, unbiased=False).mean().clamp(min=1e-6)


def patient_reps(out, is_target: torch.Tensor, gather=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Common and salient reps of the patients of both views (gathered across processes by
    ``gather`` under DDP), the rows the leakage options act on."""
    both = torch.cat([is_target, is_target])
    common, salient = (
        rows(torch.cat([gather(r) if gather else r for r in rep.chunk(2)]), both)
        for rep in (out.common_rep, out.salient_rep)
    )
    return common, salient


class SepCLRObjective:
    """The whole objective a training step minimises: SepCLR's terms (:class:`SepCLRLoss`), then
    the leakage adversary and the leakage penalty, each with its weight.

    Parameters
    ----------
    loss : SepCLRLoss
        The paper's terms and weights.
    lambda_independence, lambda_adversary : float
        Weights of the leakage penalty and of the adversary (0: off).
    adversary : LeakageAdversary, optional
        Required when ``lambda_adversary > 0``.
    """

    def __init__(
        self,
        loss: SepCLRLoss,
        lambda_independence: float = 0.0,
        lambda_adversary: float = 0.0,
        adversary: LeakageAdversary | None = None,
    ) -> None:
        if lambda_adversary > 0 and adversary is None:
            raise ValueError("lambda_adversary > 0 needs an adversary")
        self.loss = loss
        self.lambda_independence = lambda_independence
        self.lambda_adversary = lambda_adversary
        self.adversary = adversary

    def __call__(
        self, out, is_target: torch.Tensor, independence_weight: float | None = None, gather=None
    ) -> tuple[torch.Tensor, dict]:
        """Total loss and its terms for a model output of two views.

        ``independence_weight`` is the penalty's weight at this epoch (its warm-up schedule;
        default ``lambda_independence``); ``gather`` collects reps across processes under DDP.
        """
        c1, c2 = out.common_head.chunk(2)
        s1, s2 = out.salient_head.chunk(2)
        total, terms = self.loss(c1, c2, s1, s2, is_target)
        terms = dict(terms)
        if self.lambda_adversary > 0 or self.lambda_independence > 0:
            rep_c, rep_s = patient_reps(out, is_target, gather)
            if self.lambda_adversary > 0:
                assert self.adversary is not None
                terms["adversary_r2"] = self.adversary(rep_c, rep_s)
                # the adversary minimises the unexplained fraction; the reversal makes the encoder maximise it
                total = total + self.lambda_adversary * (1.0 - terms["adversary_r2"])
            if self.lambda_independence > 0:
                weight = self.lambda_independence if independence_weight is None else independence_weight
                terms["independence"] = independence_penalty(rep_c, rep_s)
                total = total + weight * terms["independence"]
        return total, terms
