"""What every system shares: the System interface, the file-predictor contract, the run-folder writer, split rows.

The interface is declared here once. A system is a :class:`System` record in the
catalogue (:mod:`serlib.systems.registry`): its name, the label a reader sees,
the config sections it reads, whether it is seeded, which systems it runs after,
and the module that implements it. That module offers three functions, each
receiving the record's ``params`` as keyword arguments::

    fit(prepared, split, config, run_dir, *, extra, resume, progress, **params) -> metrics
        train on one split and write the run folder (predictions.csv, metrics.json, ...)
    predictor(source, **params) -> FilePredictor
        a predictor for audio files, from a run folder or from shipped tensors (:class:`Shipped`)
    export(run_dir, half_min_values, **params) -> Shipped     (only a system that ships)
        the tensors and sidecar fields of a shipped model

Implementations are imported when first used, so reading the catalogue costs nothing.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from serlib.config import Config, save_config
from serlib.core.runs import provenance, write_json
from serlib.data.corpora import ordered_labels

if TYPE_CHECKING:  # pragma: no cover
    from serlib.features.frames import FeatureSet


def write_run(out: Path, config: Config, metrics: dict[str, Any], predictions: pd.DataFrame,
              prov: dict[str, Any], *, history: pd.DataFrame | None = None) -> None:
    """Write a run folder: predictions, config, figures, provenance, and ``metrics.json`` last.

    Every system's run folder is written here. ``metrics.json`` comes last: its
    presence marks a finished run. A ``history`` (one row per epoch) adds the
    training curves.
    """
    import matplotlib.pyplot as plt

    from serlib.evaluation.plots import plot_confusion_matrix, plot_per_class, plot_training_curves

    predictions.to_csv(out / "predictions.csv", index=False)
    save_config(config, out / "config.yaml")
    figures = [plot_confusion_matrix(metrics["test"], out / "confusion_matrix.png"),
               plot_per_class(metrics["test"], out / "per_class_metrics.png")]
    if history is not None:
        title = f"{config.data.corpus} {config.data.protocol} — {out.parent.name}, {out.name}"
        figures.append(plot_training_curves(history, out / "training_curves.png", title))
    for fig in figures:
        plt.close(fig)
    write_json(out / "provenance.json", provenance(**prov))
    write_json(out / "metrics.json", metrics)


def split_rows(usable_manifest: pd.DataFrame, assignment: pd.Series, classes: list[str]) -> dict[str, np.ndarray]:
    """Row positions of each part (``train``, ``val``, ``test``) among the usable clips of ``classes``, in order."""
    split = assignment.reindex(usable_manifest.index).to_numpy()
    in_classes = usable_manifest["label"].isin(classes).to_numpy()
    return {p: np.flatnonzero((split == p) & in_classes) for p in ("train", "val", "test")}


@dataclass
class SplitData:
    """The clips of one split: ids, integer labels and feature versions."""

    ids: list[str]
    y: np.ndarray
    variants: list[list[np.ndarray]]
    speakers: list[str]


def split_data(features: FeatureSet, assignment: pd.Series, classes: list[str], part: str,
               with_augmented: bool = False) -> SplitData:
    """Collect the clips of ``part`` (train/val/test) restricted to ``classes``."""
    usable = features.usable
    rows = usable.iloc[split_rows(usable, assignment, classes)[part]]
    index = {c: i for i, c in enumerate(classes)}
    variants = [
        [features.features[u]] + (features.augmented.get(u, []) if with_augmented else [])
        for u in rows["utt_id"]
    ]
    return SplitData(list(rows["utt_id"]), np.array([index[l] for l in rows["label"]], dtype=np.int64),
                     variants, list(rows["speaker"].astype(str)))


def select_classes(manifest: pd.DataFrame, classes: list[str] | None) -> list[str]:
    """The configured classes, or every label present (:func:`serlib.data.corpora.ordered_labels`)."""
    present = set(manifest["label"])
    if classes:
        missing = [c for c in classes if c not in present]
        if missing:
            raise ValueError(f"classes {missing} do not occur in the data (present: {sorted(present)})")
        return list(classes)
    return ordered_labels(present)


class FilePredictor:
    """What every predictor offers: labels, features of a file, probabilities (or scores) of feature arrays.

    Subclasses set ``labels`` and ``info`` and implement :meth:`featurize` and :meth:`predict_arrays`.
    ``outputs`` is ``"p"`` for class probabilities, ``"score"`` for the decision
    scores of an SVM, which has no probabilities; the columns of
    :meth:`predict_files` and of a run's ``predictions.csv`` are named after it.
    """

    labels: list[str]
    info: dict[str, Any]
    outputs: str = "p"
    adapts: bool = False  # whether :meth:`adapted_to` can replace the input statistics

    def featurize(self, path: str | Path) -> np.ndarray:
        """Audio file -> the model's input features (raises :class:`serlib.data.audio.AudioError`)."""
        raise NotImplementedError

    def predict_arrays(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        """Probabilities (or scores) ``(n, len(labels))`` of featurised clips."""
        raise NotImplementedError

    def adapted_to(self, arrays: Sequence[np.ndarray]) -> "FilePredictor":
        """This predictor with its input standardised by the statistics of ``arrays`` (featurised files of one
        source) instead of its training statistics: **transductive**, as it reads every file before scoring any.

        Raises
        ------
        CannotPredictFiles
            The model has no input standardisation to replace (only the Whisper-base heads have one).
        """
        raise CannotPredictFiles("only the Whisper-base heads (encoder-head, encoder-mlp) can standardise the files "
                                 "with their own statistics")

    def predict_file(self, path: str | Path) -> np.ndarray:
        """Probabilities (or scores) ``(len(labels),)`` of one audio file (raises :class:`serlib.data.audio.AudioError`)."""
        return self.predict_arrays([self.featurize(path)])[0]

    def predict_files(self, paths: Sequence[str | Path]) -> "pd.DataFrame":
        """One row per file: path, predicted label, and a column ``<outputs>_<label>`` per class (``p_happy``)."""
        probs = self.predict_arrays([self.featurize(p) for p in paths])
        df = pd.DataFrame({"path": [str(p) for p in paths], "label": [self.labels[i] for i in probs.argmax(1)]})
        for k, lab in enumerate(self.labels):
            df[f"{self.outputs}_{lab}"] = probs[:, k]
        return df


def own_statistics(arrays: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (+1e-5, as in training) of featurised files, feature by feature."""
    stacked = np.asarray(np.stack(list(arrays)), dtype=np.float64)
    return stacked.mean(axis=0), stacked.std(axis=0) + 1e-5


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class CannotPredictFiles(ValueError):
    """A system, or one run of it, cannot score a lone audio file (one line says why)."""


@dataclass
class Shipped:
    """A model as shipped: its tensors (numpy, for safetensors) and its sidecar fields."""

    meta: dict[str, Any]
    tensors: dict[str, np.ndarray]


@dataclass(frozen=True)
class System:
    """One system of the catalogue, and the interface every system implements (see the module docstring).

    Attributes
    ----------
    name
        Run-folder name, e.g. ``whisper-mlp``.
    label
        What a reader sees, e.g. ``Whisper-base + layer-weighted MLP``.
    module
        The module that implements ``fit``, ``predictor`` and (when it ships) ``export``.
    kind
        ``network``, ``classical``, ``encoder`` or ``fusion``.
    sections
        Config sections the system reads (``None``: all): what makes a finished run stale.
    description
        One line for listings and the report's methods table.
    seeded
        Whether the result depends on the seed: such systems run every seed of a grid.
    recipe
        Name of the system's config overlay ``configs/models/<recipe>.yaml``, or ``None``.
    version
        Bumped when the code changes what the system computes under the same config.
    after
        Systems whose run folders this one reads (a fusion's components).
    params
        Keyword arguments the module's functions receive (systems that share a module).
    ships_as
        The ``kind`` written into the sidecar of a shipped model of this system (``None``: it does not ship).
    transductive
        Whether the system normalises with statistics of the test speakers, so it cannot score a lone file.
    post_hoc
        Empty, or why the system's design is post hoc: a rule written after test numbers it is scored on
        were seen. The report marks such a system wherever it appears and never names it "best".
    post_hoc_on
        Corpus -> why the system is post hoc on that corpus only (a rule added after its test numbers there were
        seen, which changes nothing elsewhere); marked on that corpus's pages like ``post_hoc``.
    multi_corpus
        Whether the system trains on the corpora of ``data.extra_train`` too (and needs them).
    """

    name: str
    label: str
    module: str
    kind: str
    sections: tuple[str, ...] | None
    description: str = ""
    seeded: bool = False
    recipe: str | None = None
    version: int = 1
    after: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    ships_as: str | None = None
    transductive: bool = False
    post_hoc: str = ""
    post_hoc_on: Mapping[str, str] = field(default_factory=dict)
    multi_corpus: bool = False

    def post_hoc_reason(self, corpus: str | None = None) -> str:
        """Why the system is post hoc (everywhere, or with ``corpus`` on that corpus); empty when it is not."""
        return self.post_hoc or (self.post_hoc_on.get(corpus, "") if corpus is not None else "")

    def implementation(self) -> Any:
        """The implementing module (imported now)."""
        return importlib.import_module(self.module)

    def fit(self, prepared: Any, split: pd.Series, config: Config, run_dir: Path, *, extra: dict[str, Any],
            resume: bool = True, progress: bool = False) -> dict[str, Any]:
        """Train and test on one split (``train``/``val``/``test`` per usable clip); writes ``run_dir``, returns metrics."""
        return self.implementation().fit(prepared, split, config, Path(run_dir), extra=extra, resume=resume,
                                         progress=progress, **self.params)

    def predictor(self, source: str | Path | Shipped) -> FilePredictor:
        """A predictor for audio files from a finished run folder or from shipped tensors.

        Raises
        ------
        CannotPredictFiles
            The system is transductive, or the run folder lacks the weights (they are not committed).
        """
        if self.transductive:
            raise CannotPredictFiles(f"{self.name} standardises with the test speakers' own statistics, so it "
                                     "cannot score a lone file")
        return self.implementation().predictor(source if isinstance(source, Shipped) else Path(source),
                                               **self.params)

    def export(self, run_dir: str | Path, half_min_values: int | None = None) -> Shipped | None:
        """The shipped form of a finished run (``None`` when this system does not ship)."""
        if self.ships_as is None:
            return None
        return self.implementation().export(Path(run_dir), half_min_values, **self.params)

    @property
    def recipe_path(self) -> Path | None:
        """The recipe YAML of this system (``None`` when it has none)."""
        from serlib.core.runs import PROJECT_ROOT

        return PROJECT_ROOT / "configs" / "models" / f"{self.recipe}.yaml" if self.recipe else None

