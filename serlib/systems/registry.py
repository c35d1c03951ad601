"""The catalogue: every system the report compares, one registration line each.

A system is a :class:`~serlib.systems.base.System` record: its run-folder name,
the label a reader sees, the module that implements ``fit``, ``predictor`` and
``export`` (see :mod:`serlib.systems.base`), the config sections it reads, and
whether it is seeded, which systems it runs after and what it ships as. The
experiment layer (:func:`serlib.experiments.protocol.run_protocol`), the CLI,
the report and the shipped models all look systems up here; adding one is one
module and one line below::

    register(System("my-head", "My head on Whisper-base", "serlib.systems.my_head", "encoder", ENCODER))

A system may come with a **recipe**: a commented YAML overlay
(``configs/models/<name>.yaml``) merged on top of the corpus config before the
user's own overlays and ``--set`` overrides. Tier-1+ is Tier-1's network under
its recipe; every entry point applies it, and a run planned under a config that
contradicts its recipe is refused (:func:`check_recipe`).

``sections`` is what makes a finished run stale (:mod:`serlib.systems.reuse`): a
baseline that never reads ``train`` is not retrained when the network's epochs
change. Implementations are imported only when a system is fitted, loaded or
exported, so looking a name up costs nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pandas as pd

from serlib.systems.base import System

if TYPE_CHECKING:  # pragma: no cover
    from serlib.config import Config

REGISTRY: dict[str, System] = {}


def register(system: System) -> System:
    """Add ``system`` to the catalogue (a second registration of a name is an error)."""
    if system.name in REGISTRY:
        raise ValueError(f"model {system.name!r} is registered twice")
    REGISTRY[system.name] = system
    return system


def get_model(name: str) -> System:
    """The registered system ``name``; a one-line error lists the known names."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; registered models: {', '.join(sorted(REGISTRY))}") from None


def system_for_run(model: str) -> System:
    """The system a run folder's model name belongs to: its own, or Tier-1's for a ``tier1-<variant>`` ablation."""
    if model in REGISTRY:
        return REGISTRY[model]
    if model.startswith("tier1"):
        return REGISTRY["tier1"]
    return get_model(model)


def shipping_as(kind: str) -> System:
    """The first system whose shipped models have this sidecar ``kind`` (``tier1``, ``encoder-mlp``, ...)."""
    for system in REGISTRY.values():
        if system.ships_as == kind:
            return system
    kinds = sorted({s.ships_as for s in REGISTRY.values() if s.ships_as})
    raise ValueError(f"no system ships models of kind {kind!r} (kinds: {', '.join(kinds)})")


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
    if (spec.kind == "network" or spec.recipe) and loaded != (spec.recipe or ""):
        need = f"its recipe configs/models/{spec.recipe}.yaml" if spec.recipe else "no system recipe"
        raise ValueError(f"model {model!r} trains under {need}, but this config was loaded with "
                         f"{'recipe ' + repr(loaded) if loaded else 'none'}; load it with "
                         f"serlib.systems.registry.recipe_overlays({model!r}) as the first overlays")


def model_table() -> pd.DataFrame:
    """Every registered system: name, label, kind, sections it reads, description."""
    return pd.DataFrame([{"model": s.name, "label": s.label, "kind": s.kind, "reads": ", ".join(s.sections or ("all",)),
                          "description": s.description} for s in REGISTRY.values()])


# ----------------------------------------------------------------------------- the catalogue

NETWORK = ("data", "preprocess", "features", "wave_augment", "batch_augment", "model", "train")
FRAMES = ("data", "preprocess", "features")
FUNCTIONALS = ("data",)
ENCODER = ("data", "encoder")
_FEATURE_SETS = {"egemaps": "eGeMAPS", "compare": "ComParE"}
_OPENSMILE = {"egemaps": "eGeMAPSv02", "compare": "ComParE_2016"}
_HEADS = {"svm": "linear SVM", "logreg": "logistic regression"}

register(System("tier1", "Tier-1", "serlib.systems.tier1.system", "network", NETWORK, seeded=True, ships_as="tier1",
                description="Tier-1: the previous system's CNN-BiLSTM-attention network, reproduced faithfully"))
register(System("tier1plus", "Tier-1+", "serlib.systems.tier1.system", "network", NETWORK, seeded=True,
                recipe="tier1plus", ships_as="tier1",
                description="Tier-1+: Tier-1's network trained with the improved recipe chosen on validation "
                            "speakers (configs/models/tier1plus.yaml)"))
register(System("baseline-svm", "MFCC-statistics SVM", "serlib.systems.mfcc_svm", "classical", FRAMES,
                description="MFCC statistics (mean, std of frames) + RBF SVM, C on validation speakers"))
for _set in ("egemaps", "compare"):
    for _clf in ("svm", "logreg"):
        register(System(f"{_set}-{_clf}", f"{_FEATURE_SETS[_set]} + {_HEADS[_clf]}", "serlib.systems.opensmile_linear",
                        "classical", FUNCTIONALS, params={"feature_set": _set, "classifier": _clf},
                        description=f"openSMILE {_OPENSMILE[_set]} functionals + {_HEADS[_clf]}, C on validation "
                                    "speakers"))
        register(System(f"{_set}-{_clf}-spkz", f"{_FEATURE_SETS[_set]} + {_HEADS[_clf]} (per-speaker z-score, "
                        "transductive)", "serlib.systems.opensmile_linear", "classical", FUNCTIONALS,
                        params={"feature_set": _set, "classifier": _clf, "speaker_norm": True}, transductive=True,
                        description=f"openSMILE {_OPENSMILE[_set]} functionals + {_HEADS[_clf]}, C on validation "
                                    "speakers, per-speaker z-score (transductive: uses test speakers' statistics)"))
for _clf in ("logreg", "svm"):
    register(System(f"whisper-{_clf}", f"Whisper-base + {_HEADS[_clf]}", "serlib.systems.whisper_linear", "encoder",
                    ENCODER, params={"classifier": _clf}, ships_as="encoder-head" if _clf == "logreg" else None,
                    description=f"frozen Whisper-base encoder, pooled mean + std of one layer (chosen on validation "
                                f"speakers) + {_HEADS[_clf]}"))
_MLP_INPUT_CHOICE = ("the choice between the mix of every layer and the last layer alone was added after the first "
                     "design's (always the mix) test results on SAVEE were seen")
register(System("whisper-mlp", "Whisper-base + layer-weighted MLP", "serlib.systems.whisper_mlp", "encoder", ENCODER,
                seeded=True, version=2, ships_as="encoder-mlp", post_hoc_on={"savee": _MLP_INPUT_CHOICE},
                description="frozen Whisper-base encoder, learned softmax weights over every layer's pooled mean + std "
                            "or the last layer alone (chosen on validation speakers), one-hidden-layer MLP, early "
                            "stopping on validation speakers"))
for _clf, _name in (("logreg", "logistic regression"), ("mlp", "layer-weighted MLP")):
    register(System(f"whisper-{_clf}-multi", f"Whisper-base + {_name}, several corpora", "serlib.systems.whisper_multi",
                    "encoder", ENCODER, params={"head": _clf}, seeded=_clf == "mlp", recipe="multi",
                    multi_corpus=True, ships_as="encoder-mlp" if _clf == "mlp" else "encoder-head",
                    version=2 if _clf == "logreg" else 1,  # logreg 2: dropped classes no longer count in corpus weights
                    description=f"whisper-{_clf} trained on its corpus's training speakers plus every clip of the "
                                "other corpora (configs/models/multi.yaml); the target's classes are scored"))
register(System("whisper-mlp-twostage-multi", "Whisper-base + layer-weighted MLP, several corpora, then its own "
                "speakers", "serlib.systems.whisper_multi", "encoder", ENCODER,
                params={"head": "mlp", "then_own": True},
                seeded=True, recipe="multi", multi_corpus=True, ships_as="encoder-mlp",
                post_hoc="it was designed after the in-corpus test results of whisper-mlp-multi were seen",
                description="whisper-mlp-multi trained on, in addition, the corpus's own training speakers alone "
                            "(the single-corpus head's schedule from the several-corpora weights), that second stage "
                            "kept when validation speakers prefer it; in-corpus only"))
register(System("whisper-logreg-loco-multi", "Whisper-base + logistic regression, several corpora, chosen on held-out "
                "corpora", "serlib.systems.whisper_multi", "encoder", ENCODER,
                params={"head": "logreg", "select_on": "corpora"}, recipe="multi", multi_corpus=True,
                ships_as="encoder-head",
                post_hoc="its selection rule was written after the held-out results of whisper-logreg-multi and "
                         "whisper-mlp-multi were seen",
                description="whisper-logreg-multi with its layer and C chosen by leaving each training corpus out in "
                            "turn (mean UAR over them) instead of on validation speakers: a head for corpora it never "
                            "trained on"))
register(System("whisper-attn", "Whisper-base frames + attentive-pooling head", "serlib.systems.whisper_attention",
                "encoder", ENCODER, seeded=True,
                description="frozen Whisper-base encoder frames (25 Hz), learned softmax weights over every layer or "
                            "the last layer alone (chosen on validation speakers), attentive statistics pooling, "
                            "one-hidden-layer MLP, early stopping on validation speakers"))
register(System("whisper-fusion", "Whisper-base MLP + Tier-1+ (late fusion)", "serlib.systems.fusion", "fusion",
                ENCODER, seeded=True, after=("whisper-mlp", "tier1plus"), ships_as="fusion",
                post_hoc_on={"savee": "its MLP component: " + _MLP_INPUT_CHOICE},
                description="late fusion of whisper-mlp and Tier-1+ of the same fold and seed: weighted geometric mean "
                            "of their posteriors, the weight chosen on validation speakers (serlib.systems.fusion)"))
register(System("whisper-fusion-pooled", "Whisper-base MLP + Tier-1+ (late fusion, pooled weight)",
                "serlib.systems.fusion_pooled", "fusion", ENCODER, seeded=True,
                after=("whisper-fusion", "whisper-mlp", "tier1plus"), ships_as="fusion",
                post_hoc="its weight rule was written after the test numbers of the per-fold fusion were seen",
                post_hoc_on={"savee": "its MLP component: " + _MLP_INPUT_CHOICE},
                description="the late fusion of whisper-mlp and Tier-1+ with one weight per seed: the best mean of the "
                            "whisper-fusion validation curves of this fold and of every other fold whose validation "
                            "speakers are none of this fold's test speakers (serlib.systems.fusion_pooled)"))

__all__ = ["REGISTRY", "register", "get_model", "system_for_run", "shipping_as", "model_table", "run_order",
           "recipe_overlays", "check_recipe"]
