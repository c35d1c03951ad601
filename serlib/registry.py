"""The model registry: every system the report compares, by name.

A system is registered once with the config sections it reads and a ``fit``
function that trains it on one split and writes its run folder. The experiment
layer (:func:`serlib.experiment.run_protocol`) and the CLI look systems up here,
so a new architecture or baseline needs no edit to the training loop or the
batch code::

    @register("my-model", sections=("data", "features"), kind="classical")
    def fit_my_model(prepared, assignment, config, out_dir, *, extra, resume, progress) -> dict: ...

A system may come with a **recipe**: a commented YAML overlay
(``configs/models/<name>.yaml``) merged on top of the corpus config before the
user's own overlays and ``--set`` overrides. Tier-1+ is Tier-1's network under
its recipe (other inputs, pooling and training length); every entry point
(``serlib train``, the grid, ``make run``) applies it, and a run planned under
a config that contradicts its recipe is refused (:func:`check_recipe`).

``sections`` is what makes a finished run stale (:mod:`serlib.reuse`): a baseline
that never reads ``train`` is not retrained when the network's epochs change.
Heavy modules (torch, scikit-learn, openSMILE) are imported inside the fit
functions, so looking up a name costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Callable

import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    from .config import Config
    from .experiment import Prepared

FitFunction = Callable[..., dict[str, Any]]


@dataclass(frozen=True)
class ModelSpec:
    """One registered system.

    Attributes
    ----------
    name
        Registry key; also the run-folder name of the model.
    sections
        Config sections the system reads (``None``: all of them).
    kind
        ``network`` (trained with :mod:`serlib.train`), ``classical`` (a
        scikit-learn pipeline on fixed features), ``encoder`` (a head on a
        frozen pretrained encoder) or ``fusion`` (a combination of other
        systems' runs of the same fold and seed, which must exist first).
    fit
        ``fit(prepared, assignment, config, out_dir, *, extra, resume, progress) -> metrics``.
    description
        One line for listings and the report's methods table.
    seeded
        Whether the result depends on the seed (initialisation, batch order):
        such systems run every seed of a grid, deterministic ones seed 0 only.
    recipe
        Name of the system's config overlay ``configs/models/<recipe>.yaml``, or ``None``.
    version
        Bumped when a change of the code changes what the system computes under
        the same config: its run folders of an older version are then stale
        (:func:`serlib.reuse.make_request`).
    after
        Systems whose run folders this one reads (a fusion's components): a
        grid runs it only once theirs have finished (:func:`run_order`).
    """

    name: str
    sections: tuple[str, ...] | None
    kind: str
    fit: FitFunction
    description: str = ""
    seeded: bool = False
    recipe: str | None = None
    version: int = 1
    after: tuple[str, ...] = ()

    @property
    def recipe_path(self) -> Path | None:
        """The recipe YAML of this system (``None`` when it has none)."""
        from .runs import PROJECT_ROOT

        return PROJECT_ROOT / "configs" / "models" / f"{self.recipe}.yaml" if self.recipe else None


REGISTRY: dict[str, ModelSpec] = {}


def register(name: str, *, sections: tuple[str, ...] | None, kind: str, description: str = "",
             seeded: bool | None = None, recipe: str | None = None, version: int = 1,
             after: tuple[str, ...] = ()) -> Callable[[FitFunction], FitFunction]:
    """Decorator: register ``fit`` under ``name`` (a second registration of a name is an error)."""

    def wrap(fit: FitFunction) -> FitFunction:
        if name in REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        REGISTRY[name] = ModelSpec(name, sections, kind, fit, description,
                                   kind == "network" if seeded is None else seeded, recipe, version, after)
        return fit

    return wrap


def get_model(name: str) -> ModelSpec:
    """The registered system ``name``; a one-line error lists the known names."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; registered models: {', '.join(sorted(REGISTRY))}") from None


def run_order(models: Sequence[str]) -> list[list[str]]:
    """``models`` in stages: each system after the systems it reads (``after``) among ``models``; order kept."""
    level: dict[str, int] = {}

    def depth(model: str, seen: tuple[str, ...] = ()) -> int:
        if model in seen:
            raise ValueError(f"systems read each other's runs in a cycle: {' -> '.join((*seen, model))}")
        if model not in level:
            level[model] = 1 + max((depth(a, (*seen, model)) for a in get_model(model).after if a in models),
                                   default=-1)
        return level[model]

    stages: list[list[str]] = [[] for _ in range(1 + max((depth(m) for m in models), default=-1))]
    for model in models:
        stages[level[model]].append(model)
    return stages


def recipe_overlays(model: str) -> tuple[str, ...]:
    """The overlay files a config of ``model`` starts with: its recipe, or nothing."""
    path = get_model(model).recipe_path
    return (str(path),) if path else ()


def check_recipe(model: str, config: "Config") -> None:
    """Raise ``ValueError`` unless ``config`` was loaded with ``model``'s recipe (and with no other one).

    A recipe file names itself (``model.recipe``), so Tier-1+ never trains under a
    config loaded without its recipe, and Tier-1 never under Tier-1+'s.
    """
    spec = get_model(model)
    loaded = getattr(config.model, "recipe", "")
    if spec.kind == "network" and loaded != (spec.recipe or ""):
        need = f"its recipe configs/models/{spec.recipe}.yaml" if spec.recipe else "no system recipe"
        raise ValueError(f"model {model!r} trains under {need}, but this config was loaded with "
                         f"{'recipe ' + repr(loaded) if loaded else 'none'}; load it with "
                         f"serlib.registry.recipe_overlays({model!r}) as the first overlays")


def model_table() -> pd.DataFrame:
    """Every registered system: name, kind, sections it reads, description."""
    return pd.DataFrame([{"model": s.name, "kind": s.kind, "reads": ", ".join(s.sections or ("all",)),
                          "description": s.description} for s in REGISTRY.values()])


# ----------------------------------------------------------------------------- the systems

NETWORK_SECTIONS = ("data", "preprocess", "features", "wave_augment", "batch_augment", "model", "train")


@register("tier1", sections=NETWORK_SECTIONS, kind="network",
          description="Tier-1: the previous system's CNN-BiLSTM-attention network, reproduced faithfully")
def _fit_tier1(prepared: "Prepared", assignment: pd.Series, config: "Config", out_dir: Path, *,
               extra: dict[str, Any], resume: bool, progress: bool) -> dict[str, Any]:
    from .train import fit

    return fit(prepared.features, assignment, config, out_dir, resume=resume, progress=progress,
               extra_provenance=extra, extra_train=prepared.extra)


register("tier1plus", sections=NETWORK_SECTIONS, kind="network", recipe="tier1plus",
         description="Tier-1+: Tier-1's network trained with the improved recipe chosen on validation speakers "
                     "(configs/models/tier1plus.yaml)")(_fit_tier1)


@register("baseline-svm", sections=("data", "preprocess", "features"), kind="classical",
          description="MFCC statistics (mean, std of frames) + RBF SVM, C on validation speakers")
def _fit_mfcc_svm(prepared: "Prepared", assignment: pd.Series, config: "Config", out_dir: Path, *,
                  extra: dict[str, Any], resume: bool, progress: bool) -> dict[str, Any]:
    from .baseline import fit_baseline

    return fit_baseline(prepared.features, assignment, config, out_dir, extra_provenance=extra)


def _register_functional(feature_set: str, classifier: str, speaker_norm: bool) -> None:
    name = f"{feature_set}-{classifier}" + ("-spkz" if speaker_norm else "")  # baseline.functional_model_name
    label = {"egemaps": "eGeMAPSv02", "compare": "ComParE_2016"}[feature_set]
    head = {"svm": "linear SVM", "logreg": "logistic regression"}[classifier]
    norm = ", per-speaker z-score (transductive: uses test speakers' statistics)" if speaker_norm else ""

    @register(name, sections=("data",), kind="classical",
              description=f"openSMILE {label} functionals + {head}, C on validation speakers{norm}")
    def _fit(prepared: "Prepared", assignment: pd.Series, config: "Config", out_dir: Path, *,
             extra: dict[str, Any], resume: bool, progress: bool) -> dict[str, Any]:
        from .baseline import fit_functional_model

        return fit_functional_model(name, prepared.features, assignment, config, out_dir, progress=progress,
                                    extra_provenance=extra)


def _register_encoder_head(classifier: str) -> None:
    name = f"whisper-{classifier}"
    head = {"svm": "linear SVM", "logreg": "logistic regression"}[classifier]

    @register(name, sections=("data", "encoder"), kind="encoder",
              description=f"frozen Whisper-base encoder, pooled mean + std of one layer (chosen on validation "
                          f"speakers) + {head}")
    def _fit(prepared: "Prepared", assignment: pd.Series, config: "Config", out_dir: Path, *,
             extra: dict[str, Any], resume: bool, progress: bool) -> dict[str, Any]:
        from .encoder_heads import fit_encoder_head

        return fit_encoder_head(prepared, assignment, config, out_dir, classifier=classifier, model_name=name,
                                extra_provenance=extra, progress=progress)


for _clf in ("logreg", "svm"):
    _register_encoder_head(_clf)


@register("whisper-mlp", sections=("data", "encoder"), kind="encoder", seeded=True, version=2,
          description="frozen Whisper-base encoder, learned softmax weights over every layer's pooled mean + std "
                      "or the last layer alone (chosen on validation speakers), one-hidden-layer MLP, early "
                      "stopping on validation speakers")
def _fit_whisper_mlp(prepared: "Prepared", assignment: pd.Series, config: "Config", out_dir: Path, *,
                     extra: dict[str, Any], resume: bool, progress: bool) -> dict[str, Any]:
    from .encoder_mlp import fit_encoder_mlp

    return fit_encoder_mlp(prepared, assignment, config, out_dir, extra_provenance=extra, progress=progress)

@register("whisper-attn", sections=("data", "encoder"), kind="encoder", seeded=True,
          description="frozen Whisper-base encoder frames (25 Hz), learned softmax weights over every layer or the "
                      "last layer alone (chosen on validation speakers), attentive statistics pooling, "
                      "one-hidden-layer MLP, early stopping on validation speakers")
def _fit_whisper_attention(prepared: "Prepared", assignment: pd.Series, config: "Config", out_dir: Path, *,
                           extra: dict[str, Any], resume: bool, progress: bool) -> dict[str, Any]:
    from .encoder_attention import fit_encoder_attention

    return fit_encoder_attention(prepared, assignment, config, out_dir, extra_provenance=extra, progress=progress)


@register("whisper-fusion", sections=("data", "encoder"), kind="fusion", seeded=True, after=("whisper-mlp", "tier1plus"),
          description="late fusion of whisper-mlp and Tier-1+ of the same fold and seed: weighted geometric mean of "
                      "their posteriors, the weight chosen on validation speakers (serlib.fusion)")
def _fit_whisper_fusion(prepared: "Prepared", assignment: pd.Series, config: "Config", out_dir: Path, *,
                        extra: dict[str, Any], resume: bool, progress: bool) -> dict[str, Any]:
    from .fusion import fit_fusion

    return fit_fusion(prepared, assignment, config, out_dir, extra_provenance=extra, progress=progress)


@register("whisper-fusion-pooled", sections=("data", "encoder"), kind="fusion", seeded=True,
          after=("whisper-fusion", "whisper-mlp", "tier1plus"),
          description="the late fusion of whisper-mlp and Tier-1+ with one weight per seed: the best mean of the "
                      "whisper-fusion validation curves of every fold whose validation speakers are none of this "
                      "fold's test speakers (serlib.fusion_pooled)")
def _fit_whisper_fusion_pooled(prepared: "Prepared", assignment: pd.Series, config: "Config", out_dir: Path, *,
                               extra: dict[str, Any], resume: bool, progress: bool) -> dict[str, Any]:
    from .fusion_pooled import fit_pooled_fusion

    return fit_pooled_fusion(prepared, assignment, config, out_dir, extra_provenance=extra)


for _set in ("egemaps", "compare"):
    for _clf in ("svm", "logreg"):
        for _norm in (False, True):
            _register_functional(_set, _clf, _norm)


__all__ = ["ModelSpec", "REGISTRY", "register", "get_model", "model_table", "run_order", "recipe_overlays",
           "check_recipe"]
