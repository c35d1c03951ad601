"""Cross-corpus tests: train on one corpus, test on another over their shared classes.

For a group of corpora, the shared classes are the intersection of their labels.
For each corpus A of the group a Tier-1 model is trained on fold 1 of A's primary
protocol (``configs/<A>.yaml``; ``protocol`` overrides it for every corpus),
restricted to the shared classes, with validation from A's own training
speakers, as the Whisper head's matrices are (:mod:`serlib.experiments.encoder_crosscorpus`).
Its best checkpoint is then

* tested on the test speakers of A's fold 1 (the diagonal: within-corpus,
  speaker-independent where A's protocol is), and
* tested on every usable clip of each other corpus B with a shared label
  (off-diagonal).

Training runs live in ordinary run folders
(``results/<A>/<protocol>/tier1-x-<classes>/fold-1/seed-<s>/``) and each
cross evaluation is written beside them as ``cross-<B>.json``. When the shared
classes are all of A's classes (CREMA-D among the six-class corpora, URDU among
the four-class ones), that training is exactly A's own Tier-1 run of fold 1, so
the run in ``results/<A>/<protocol>/tier1/`` is scored instead of training the
same network twice (:func:`run_name`).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import pandas as pd

from serlib.config import SMOKE_OVERRIDES, load_config
from serlib.core.runs import PROJECT_ROOT, class_tag, read_json, tested_checkpoint, write_json
from serlib.data.corpora import CANONICAL_LABELS
from serlib.evaluation.plots import plot_uar_matrix
from serlib.experiments.protocol import run_protocol
from serlib.features.prepared import prepare
from serlib.systems.base import select_classes
from serlib.systems.tier1.predictor import Predictor

GROUPS: dict[str, list[str]] = {
    "six-corpora-4-classes": ["ravdess", "emodb", "cremad", "tess", "savee", "urdu"],
    "five-corpora-6-classes": ["ravdess", "emodb", "cremad", "tess", "savee"],
}
"""The report's groups: all six available corpora on the 4 classes they share (URDU has 4), and the five
acted corpora on their 6 shared classes (neutral, happy, sad, angry, fear, disgust)."""


def shared_classes(label_sets: Sequence[set[str]]) -> list[str]:
    """Labels present in every set, in canonical order."""
    common = set.intersection(*map(set, label_sets))
    return [c for c in CANONICAL_LABELS if c in common]


def _group(corpora: Sequence[str], *, data_root: str | Path | None, cache_dir: str | Path | None, smoke: bool,
           protocol: str | None = None):
    """(configs, prepared corpora, shared classes, run-folder name) of a group of corpora."""
    configs = {c: load_config(PROJECT_ROOT / "configs" / f"{c}.yaml", overrides=_overrides(smoke, protocol))
               for c in corpora}
    prepared = {c: prepare(cfg, data_root=data_root, cache_dir=cache_dir, progress=False) for c, cfg in configs.items()}
    classes = shared_classes([set(p.features.usable["label"]) for p in prepared.values()])
    if len(classes) < 2:
        raise ValueError(f"corpora {list(corpora)} share fewer than two classes: {classes}")
    return configs, prepared, classes, class_tag(classes)


def run_name(results: str | Path, corpus: str, protocol: str, seed: int, classes: Sequence[str],
             own_classes: Sequence[str]) -> str:
    """Where ``corpus`` trains (or is found trained) for a group sharing ``classes``, for one seed.

    ``"tier1"``, the corpus's own Tier-1 run of fold 1, when ``classes`` are all
    of its classes in the same order (the very same training) and that run can
    be scored: it has its checkpoint, or the cross scores it already holds (a
    fresh clone has no checkpoints). Otherwise ``tier1-x-<classes>``.
    """
    if list(classes) != list(own_classes):
        return class_tag(classes)
    own = Path(results) / corpus / protocol / "tier1" / "fold-1" / f"seed-{seed}"
    scorable = tested_checkpoint(own) is not None or any(own.glob("cross-*.json"))
    return "tier1" if (own / "metrics.json").is_file() and scorable else class_tag(classes)


def _training_config(config, name: str, classes: Sequence[str]):
    """``config`` restricted to ``classes``, except for a corpus's own Tier-1 run, which keeps its request as it is."""
    if name == "tier1":
        return config
    restricted = copy.deepcopy(config)
    restricted.data.classes = list(classes)
    return restricted


def _overrides(smoke: bool, protocol: str | None) -> list[str]:
    return ([f"data.protocol={protocol}"] if protocol else []) + (list(SMOKE_OVERRIDES) if smoke else [])


def training_specs(groups: dict[str, Sequence[str]], *, data_root: str | Path | None = None, results: str | Path,
                   cache_dir: str | Path | None = None, seeds: Sequence[int] = (0,), smoke: bool = False,
                   protocol: str | None = None) -> list:
    """The Tier-1 trainings of every group as :class:`serlib.experiments.grid.RunSpec` (one Dask task each).

    :func:`run_matrix` afterwards finds them finished and only scores the
    cross-corpus tests; a corpus shared by two groups with the same classes is
    trained once.
    """
    from serlib.experiments.grid import RunSpec

    specs: dict[str, RunSpec] = {}
    for corpora in groups.values():
        configs, prepared, classes, _ = _group(corpora, data_root=data_root, cache_dir=cache_dir, smoke=smoke,
                                               protocol=protocol)
        for a in corpora:
            own = select_classes(prepared[a].features.usable, configs[a].data.classes)
            for seed in seeds:
                name = run_name(results, a, configs[a].data.protocol, int(seed), classes, own)
                restrict = () if name == "tier1" else (f"data.classes=[{', '.join(classes)}]",)
                spec = RunSpec(corpus=a, model="tier1", fold=0, seed=int(seed), protocol=configs[a].data.protocol,
                               overrides=(*(SMOKE_OVERRIDES if smoke else ()), *restrict),
                               name=name, data_root=str(data_root) if data_root else None,
                               cache_dir=str(cache_dir) if cache_dir else None, results=str(results))
                specs.setdefault(spec.label, spec)
    return list(specs.values())


def run_matrix(corpora: Sequence[str], *, data_root: str | Path | None = None, results: str | Path,
               cache_dir: str | Path | None = None, seeds: Sequence[int] = (0,), smoke: bool = False,
               protocol: str | None = None) -> tuple[list[str], pd.DataFrame]:
    """Train-corpus x test-corpus UAR matrix (mean over seeds) for one group of corpora."""
    configs, prepared, classes, _ = _group(corpora, data_root=data_root, cache_dir=cache_dir, smoke=smoke,
                                           protocol=protocol)
    matrix = pd.DataFrame(index=list(corpora), columns=list(corpora), dtype=float)
    for a in corpora:
        own = select_classes(prepared[a].features.usable, configs[a].data.classes)
        runs = []
        for seed in seeds:
            name = run_name(results, a, configs[a].data.protocol, int(seed), classes, own)
            table = run_protocol(_training_config(configs[a], name, classes), prepared[a], folds=[0], seeds=[seed],
                                 models=("tier1",), results=results, tier1_name=name, progress=False)
            runs += list(table.itertuples())
        scores: dict[str, list[float]] = {b: [] for b in corpora}
        for run in runs:
            scores[a].append(run.test_uar)
            ckpt = tested_checkpoint(run.path)
            for b in corpora:
                if b == a:
                    continue
                out = Path(run.path) / f"cross-{b}.json"
                test_fingerprint = prepared[b].features.fingerprint
                if out.is_file() and read_json(out).get("test_fingerprint") == test_fingerprint:
                    scores[b].append(read_json(out)["test"]["uar"])
                    continue  # reused only for the same test data; a new copy is scored again
                if ckpt is None:
                    raise FileNotFoundError(f"no tested checkpoint (best_uar_*.pt) in {run.path}: cannot test on {b}")
                report, _ = Predictor.load(ckpt).evaluate(prepared[b].features)
                write_json(out, {"train_corpus": a, "test_corpus": b, "classes": classes, "checkpoint": ckpt.name,
                                 "test_fingerprint": test_fingerprint, "test": report})
                scores[b].append(report["uar"])
        for b, values in scores.items():
            matrix.loc[a, b] = sum(values) / len(values)
    return classes, matrix


def run_matrices(groups: dict[str, Sequence[str]], **kwargs) -> dict[str, tuple[list[str], pd.DataFrame]]:
    """:func:`run_matrix` for several named groups."""
    return {name: run_matrix(corpora, **kwargs) for name, corpora in groups.items()}


def group_title(group: str) -> str:
    """A group's reader name: ``six-corpora-4-classes`` -> ``Six corpora, 4 shared classes``."""
    import re

    found = re.fullmatch(r"(\w+)-corpora-(\d+)-classes", group)
    if not found:
        return group.replace("-", " ").capitalize()
    return f"{found.group(1).capitalize()} corpora, {found.group(2)} shared classes"


def plot(matrix: pd.DataFrame, title: str = "") -> plt.Figure:
    return plot_uar_matrix(matrix.astype(float), title=title)
