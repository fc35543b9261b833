"""Recipes of semi-synthetic cohorts: dataclasses loaded from ``cohorts/*.toml``."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from sepclr_med.errors import SepclrError


@dataclass
class Anatomy:
    """Individual anatomy: smooth random warp and head size."""

    deformation_mm: float = 2.0
    deformation_smoothness_mm: float = 16.0
    head_scale_sd: float = 0.025


@dataclass
class AgeEffect:
    """Age: global and regional gray-matter loss per decade above ``reference``."""

    range: tuple[float, float] = (20.0, 65.0)
    reference: float = 40.0
    global_loss_per_decade: float = 0.03
    regional_loss_per_decade: float = 0.05
    regions: list[str] = field(default_factory=list)
    patient_age_shift: float = 10.0


@dataclass
class SexEffect:
    """Sex: proportion of males and their relative head size."""

    male_fraction: float = 0.5
    male_head_scale: float = 1.03


@dataclass
class Site:
    """A scanner site: intensity gain, noise level and bias-field strength."""

    name: str
    gain: float = 1.0
    noise_sd: float = 0.02
    bias_strength: float = 0.05


@dataclass
class Subtype:
    """A patient subtype: GM loss of up to ``max_gm_loss`` in a set of atlas regions."""

    name: str
    regions: list[str]
    max_gm_loss: float = 0.35
    description: str = ""


@dataclass
class Score:
    """A clinical score: ``base + weights[subtype] * severity + noise``, clipped to [lo, hi]."""

    name: str
    base: float = 10.0
    noise_sd: float = 2.5
    weights: dict[str, float] = field(default_factory=dict)
    lo: float = 7.0
    hi: float = 49.0


@dataclass
class Nuisance:
    """Focal grey-matter variation in every subject, controls and patients alike.

    Each subject gets a Poisson number of Gaussian blobs (mean ``blobs_per_subject``) centred on
    random grey-matter voxels, each scaling GM by ``1 + a * g(x)`` with ``a`` uniform in
    ``[-max_gm_change, max_gm_change]`` and ``g`` a Gaussian of standard deviation drawn in
    ``sigma_mm``. It is shared variation the salient space must ignore.
    """

    blobs_per_subject: float = 0.0
    sigma_mm: tuple[float, float] = (4.0, 8.0)
    max_gm_change: float = 0.25


@dataclass
class Recipe:
    """Everything needed to generate a cohort; the same recipe and seed give identical files."""

    name: str = "custom"
    description: str = ""
    n_controls: int = 100
    n_patients: int = 100
    resolution_mm: float = 4.0
    seed: int = 0
    imbalance: float = 0.0
    holdout: bool = False  # a hold-out member of the evaluation family: choose nothing on it
    anatomy: Anatomy = field(default_factory=Anatomy)
    age: AgeEffect = field(default_factory=AgeEffect)
    sex: SexEffect = field(default_factory=SexEffect)
    nuisance: Nuisance = field(default_factory=Nuisance)
    sites: list[Site] = field(default_factory=lambda: [Site("A")])
    severity: tuple[float, float] = (0.2, 1.0)
    subtypes: list[Subtype] = field(default_factory=list)
    scores: list[Score] = field(default_factory=list)

    def validate(self) -> Recipe:
        """Check values; raise :class:`SepclrError` naming the first bad field."""
        checks = [
            (self.n_controls >= 2, "n_controls must be >= 2"),
            (self.n_patients >= 2, "n_patients must be >= 2"),
            (self.resolution_mm >= 2.0, "resolution_mm must be >= 2 (the template's grid)"),
            (0.0 <= self.imbalance <= 1.0, "imbalance must be in [0, 1]"),
            (len(self.subtypes) >= 1, "at least one subtype is needed"),
            (len(self.sites) >= 1, "at least one site is needed"),
            (0.0 <= self.severity[0] <= self.severity[1] <= 1.0, "severity range must lie in [0, 1]"),
            (all(0 < s.max_gm_loss < 1 for s in self.subtypes), "max_gm_loss must be in (0, 1)"),
            (self.nuisance.blobs_per_subject >= 0, "nuisance.blobs_per_subject must be >= 0"),
            (0 <= self.nuisance.max_gm_change < 1, "nuisance.max_gm_change must be in [0, 1)"),
            (
                0 < self.nuisance.sigma_mm[0] <= self.nuisance.sigma_mm[1],
                "nuisance.sigma_mm must be [lo, hi] with 0 < lo <= hi",
            ),
        ]
        names = {s.name for s in self.subtypes}
        for score in self.scores:
            unknown = set(score.weights) - names
            checks.append((not unknown, f"score {score.name!r} weights unknown subtype(s) {sorted(unknown)}"))
        for ok, message in checks:
            if not ok:
                raise SepclrError(f"recipe {self.name!r}: {message}")
        return self

    def replace(self, **changes) -> Recipe:
        """A copy with top-level fields changed (None values are ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None}).validate()

    def to_dict(self) -> dict:
        """Plain dictionary (TOML-serialisable)."""
        return dataclasses.asdict(self)


TOP_LEVEL_KEYS = {
    "name",
    "description",
    "n_controls",
    "n_patients",
    "resolution_mm",
    "seed",
    "imbalance",
    "holdout",
    "anatomy",
    "age",
    "sex",
    "nuisance",
    "sites",
    "severity",
    "subtypes",
    "scores",
}


def _from_dict(data: dict, source: str) -> Recipe:
    unknown = set(data) - TOP_LEVEL_KEYS
    if unknown:
        raise SepclrError(f"{source}: unknown recipe key(s) {sorted(unknown)}; known: {sorted(TOP_LEVEL_KEYS)}")
    nuisance = dict(data.get("nuisance", {}))
    if "sigma_mm" in nuisance:
        nuisance["sigma_mm"] = tuple(nuisance["sigma_mm"])
    try:
        return Recipe(
            name=data.get("name", "custom"),
            description=data.get("description", ""),
            n_controls=int(data.get("n_controls", 100)),
            n_patients=int(data.get("n_patients", 100)),
            resolution_mm=float(data.get("resolution_mm", 4.0)),
            seed=int(data.get("seed", 0)),
            imbalance=float(data.get("imbalance", 0.0)),
            holdout=bool(data.get("holdout", False)),
            anatomy=Anatomy(**data.get("anatomy", {})),
            age=AgeEffect(**{**data.get("age", {}), "range": tuple(data.get("age", {}).get("range", (20.0, 65.0)))}),
            sex=SexEffect(**data.get("sex", {})),
            nuisance=Nuisance(**nuisance),
            sites=[Site(**s) for s in data.get("sites", [{"name": "A"}])],
            severity=tuple(data.get("severity", {}).get("range", (0.2, 1.0))),
            subtypes=[Subtype(**s) for s in data.get("subtypes", [])],
            scores=[Score(**s) for s in data.get("scores", [])],
        ).validate()
    except TypeError as exc:
        raise SepclrError(f"{source}: invalid recipe field ({exc})") from None


FAMILY = "family"  # sub-folder of cohorts/ holding the evaluation family (docs/benchmarks.md)


def list_recipes() -> list[str]:
    """Names of the recipes shipped in ``cohorts/``; the evaluation family as ``family/<name>``."""
    folder = resources.files("sepclr_med.cohorts")
    names = [p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml")]
    names += [f"{FAMILY}/{p.name[:-5]}" for p in (folder / FAMILY).iterdir() if p.name.endswith(".toml")]
    return sorted(names)


def family_recipes() -> dict[str, Recipe]:
    """The evaluation family ``{name: recipe}``, sorted by name, hold-out members last."""
    names = [n for n in list_recipes() if n.startswith(FAMILY + "/")]
    recipes = {n: load_recipe(n) for n in names}
    return dict(sorted(recipes.items(), key=lambda kv: (kv[1].holdout, kv[0])))


def load_recipe(name_or_path: str | os.PathLike = "schizophrenia") -> Recipe:
    """Load a shipped recipe by name or a recipe TOML file by path.

    Parameters
    ----------
    name_or_path : str or path-like
        ``"schizophrenia"`` (the default) or any name from :func:`list_recipes`, or a path.

    Returns
    -------
    Recipe
    """
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise SepclrError(f"recipe file not found: {path}")
        text, source = path.read_text(encoding="utf-8"), str(path)
    else:
        resource = resources.files("sepclr_med.cohorts") / f"{name_or_path}.toml"
        if not resource.is_file():
            raise SepclrError(
                f"unknown recipe {str(name_or_path)!r}; shipped recipes: "
                f"{', '.join(list_recipes())}, or give a .toml path"
            )
        text, source = resource.read_text(encoding="utf-8"), f"recipe {name_or_path}"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SepclrError(f"{source}: invalid TOML ({exc})") from None
    return _from_dict(data, source)
