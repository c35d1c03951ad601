"""Shipped models: small release files in the package, so a fresh clone predicts without training.

Each shipped model is two files in :data:`MODELS_DIR` (``serlib/models/``)::

    <name>.safetensors   the weights (safetensors: raw tensors and a JSON header, no pickle)
    <name>.json          the sidecar: kind, labels, config, normalisation, where it came from, test UAR

Four kinds are exported from a finished run folder (:func:`export_run`):

``tier1``
    The Tier-1 network of the run's best checkpoint (``metrics.json`` names it),
    with its resolved config and the training normalisation statistics.
``encoder-head``
    A ``whisper-logreg`` head: the fitted numbers of its imputer, scaler and
    logistic regression (the run folder's ``head.safetensors``, written by
    :func:`save_linear_head`), the encoder layer it reads, and the encoder's
    backend, input mode and weights sha256.
``encoder-mlp``
    A ``whisper-mlp`` head (version 2 runs): its layer weights and MLP, the
    training statistics of its input layers and which layers those are (the run
    folder's ``head.safetensors``), with the encoder as above.
``fusion``
    A ``whisper-fusion`` or ``whisper-fusion-pooled`` run: its encoder weight
    and both components of the same fold and seed, an ``encoder-mlp`` (tensors
    prefixed ``encoder.``) and a Tier-1+ network (``network.``), each with its
    sidecar fields under ``components``; the top-level ``encoder`` names the
    Whisper weights and their sha256.

Precision: the large matrices (:data:`HALF_MIN_VALUES` values or more: in the
base Tier-1 network the eight LSTM matrices, 82 % of its 0.95 M parameters) are
stored as float16, everything else (convolutions, attention, pooling, the
classifier, norms, biases) as float32: 2.25 MB for the base network, whose
probabilities then stayed within 1e-4 of the run's (measured on the 49 test
clips of two EmoDB runs: at most 9.8e-5 and 7.0e-5; float16 everywhere would be
1.92 MB and 2.5e-4, as the early convolutions are the most sensitive). That
margin is thin, so ``--check`` measures it for each export. A linear Whisper
head is small (8 x 1024 coefficients) and stays float32; the MLP head's first
matrix (1024 x 256) is float16. ``dtype="float32"`` stores
everything at full precision (3.8 MB for the base network: over the 3 MB
limit). The sidecar records the sha256 of the weights file, checked when it is
loaded.

Command line::

    python -m serlib.serve.shipped export results/ravdess/emobox/tier1/fold-1/seed-0 --name ravdess --check
    python -m serlib.serve.shipped export results/ravdess/emobox/whisper-fusion-pooled/fold-1/seed-0 --name ravdess \
        --half-min-values 32768 --check      # two models in one file: a few more matrices in float16
    python -m serlib.serve.shipped list

``--check`` then predicts the run's test clips from their audio (``$SERLIB_DATA``)
with the shipped file and records in the sidecar how close the probabilities
come to the run's ``predictions.csv`` (:func:`check_reproduction`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from serlib.core.hashing import sha256_file
from serlib.core.tensors import ShippedModelError, read_tensors
from serlib.systems.registry import REGISTRY

if TYPE_CHECKING:  # pragma: no cover
    from serlib.systems.base import FilePredictor

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
"""Where the shipped models live (inside the package, installed with it)."""
FORMAT = "serlib-shipped-model"
FORMAT_VERSION = 1
MAX_BYTES = 3_000_000
"""Largest weights file :func:`export_run` writes (3 MB)."""
"""The fitted linear head in an encoder-head run folder (see :func:`save_linear_head`)."""
DTYPES = ("float16", "float32")
HALF_MIN_VALUES = 65536
"""With ``dtype="float16"``, floating tensors of at least this many values are stored as float16, the rest as float32."""
"""Run folders that export as a ``fusion``: the fused weight, its ``whisper-mlp`` and ``tier1plus`` components."""
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_+-]*")


# ----------------------------------------------------------------------------- the catalogue


@dataclass(frozen=True)
class ShippedModel:
    """One shipped model: its name, sidecar contents and files."""

    name: str
    meta: dict[str, Any]
    sidecar: Path

    @property
    def weights(self) -> Path:
        return self.sidecar.with_name(str(self.meta.get("weights", f"{self.name}.safetensors")))

    @property
    def kind(self) -> str:
        return str(self.meta.get("kind", ""))

    @property
    def labels(self) -> list[str]:
        return [str(x) for x in self.meta.get("labels", [])]

    def summary(self) -> dict[str, Any]:
        """What ``serlib models`` shows: name, kind, corpus, protocol, classes, the system's figures on the whole
        protocol (:func:`protocol_figures`, recorded in the sidecar), and the shipped fold's own test UAR."""
        m = self.meta
        whole = m.get("protocol_results") if isinstance(m.get("protocol_results"), dict) else {}
        system = str(m.get("model") or "")
        post_hoc = bool(REGISTRY[system].post_hoc_reason(str(m.get("corpus")))) if system in REGISTRY else False
        return {"name": self.name, "kind": self.kind, "system": system, "post_hoc": post_hoc,
                "corpus": m.get("corpus"), "protocol": m.get("protocol"),
                "classes": self.labels, "mean_of_folds": whole.get("mean_of_folds"),
                "std_of_folds": whole.get("std_of_folds"), "folds": whole.get("folds"),
                "pooled_uar": whole.get("pooled_uar"), "pooled_ci95": whole.get("pooled_ci95"),
                "test_speakers": whole.get("test_speakers"), "fold": m.get("fold"), "seed": m.get("seed"),
                "fold_test_uar": m.get("test_uar")}


def _models_dir(folder: str | Path | None) -> Path:
    return Path(folder) if folder is not None else MODELS_DIR


def _read_sidecar(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ShippedModelError(f"{path} is not a readable shipped-model sidecar ({type(exc).__name__}: {exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ShippedModelError(f"{path} is not a serlib shipped-model sidecar (no \"format\": \"{FORMAT}\")")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise ShippedModelError(f"{path} is format version {meta.get('format_version')}; this serlib reads up to "
                                f"{FORMAT_VERSION}: update serlib")
    kinds = sorted({s.ships_as for s in REGISTRY.values() if s.ships_as})
    if meta.get("kind") not in kinds:
        raise ShippedModelError(f"{path}: unknown kind {meta.get('kind')!r} (known: {', '.join(kinds)})")
    problem = sidecar_problem(meta)
    if problem:
        raise ShippedModelError(f"{path}: {problem}")
    return meta


def sidecar_problem(meta: dict[str, Any], n_layers: int = 7) -> str | None:
    """What is wrong with a sidecar's fields that a predictor reads (``None``: nothing): classes, layers, weights."""
    if not isinstance(meta.get("weights_sha256"), str) or len(meta["weights_sha256"]) != 64:
        return "it records no weights_sha256, so its weights cannot be checked (re-export it)"
    labels = meta.get("labels")
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) and x for x in labels):
        return "labels must be a non-empty list of class names"
    if len(set(labels)) != len(labels):
        return f"labels name a class twice ({', '.join(sorted({x for x in labels if labels.count(x) > 1}))})"
    for part in [meta] + [c for c in (meta.get("components") or {}).values() if isinstance(c, dict)]:
        layers = part.get("layers")
        if layers is not None and not (isinstance(layers, list) and layers and all(
                isinstance(i, int) and not isinstance(i, bool) and 0 <= i < n_layers for i in layers)):
            return f"layers must be encoder layer numbers 0..{n_layers - 1}, got {layers!r}"
        if part is not meta and part.get("labels") != labels:
            return "a component's labels differ from the model's"
    weight = meta.get("encoder_weight")
    if weight is not None and not (isinstance(weight, (int, float)) and 0.0 <= weight <= 1.0):
        return f"encoder_weight must be within 0..1, got {weight!r}"
    return None


def list_models(folder: str | Path | None = None) -> list[ShippedModel]:
    """Every shipped model in ``folder`` (default :data:`MODELS_DIR`), by name; unreadable sidecars are skipped."""
    return [m for m in (_listed(s) for s in sorted(_models_dir(folder).glob("*.json"))) if isinstance(m, ShippedModel)]


def broken_models(folder: str | Path | None = None) -> dict[str, str]:
    """The sidecars in ``folder`` that do not read as shipped models: name -> why (one line)."""
    return {s.stem: m for s in sorted(_models_dir(folder).glob("*.json")) if isinstance(m := _listed(s), str)}


def _listed(sidecar: Path) -> "ShippedModel | str":
    try:
        return ShippedModel(sidecar.stem, _read_sidecar(sidecar), sidecar)
    except ShippedModelError as err:
        return str(err)


def is_shipped_name(name: str, folder: str | Path | None = None) -> bool:
    """Whether ``name`` is the name of a shipped model (not a path)."""
    return bool(_NAME.fullmatch(name)) and (_models_dir(folder) / f"{name}.json").is_file()


def find_model(name: str, folder: str | Path | None = None) -> ShippedModel:
    """The shipped model called ``name``.

    Raises
    ------
    ShippedModelError
        No such model; the message lists the shipped ones (or says none are).
    """
    sidecar = _models_dir(folder) / f"{name}.json"
    if _NAME.fullmatch(name) and sidecar.is_file():
        return ShippedModel(name, _read_sidecar(sidecar), sidecar)
    names = [m.name for m in list_models(folder)]
    have = f"shipped: {', '.join(names)}" if names else "none are shipped in this copy of serlib yet"
    raise ShippedModelError(f"no shipped model named {name!r} ({have}; `serlib models` lists them, and a "
                            "checkpoint path works too)")


# ----------------------------------------------------------------------------- reading


def _weights_of(model: ShippedModel) -> dict[str, np.ndarray]:
    path = model.weights
    if not path.is_file():
        raise ShippedModelError(f"shipped model {model.name!r}: its weights file {path.name} is missing")
    if sha256_file(path) != model.meta["weights_sha256"]:  # its presence is checked with the sidecar
        raise ShippedModelError(f"shipped model {model.name!r}: {path.name} does not match the sha256 in "
                                f"{model.sidecar.name} (damaged or replaced)")
    return read_tensors(path)


def load_shipped(model: str | Path, folder: str | Path | None = None) -> "FilePredictor":
    """A predictor for a shipped model: a name in ``folder`` (default :data:`MODELS_DIR`) or a ``.json``/``.safetensors`` path.

    Returns
    -------
    serlib.systems.tier1.predictor.Predictor or serlib.systems.whisper_linear.EncoderHeadPredictor
        With ``info`` set to the sidecar.
    """
    path = Path(model)
    if path.suffix in (".json", ".safetensors"):
        sidecar = path.with_suffix(".json")
        if not sidecar.is_file():
            raise ShippedModelError(f"{path}: no sidecar {sidecar.name} beside it (a shipped model is "
                                    "NAME.safetensors + NAME.json)")
        entry = ShippedModel(sidecar.stem, _read_sidecar(sidecar), sidecar)
    else:
        entry = find_model(str(model), folder)
    tensors = _weights_of(entry)
    from serlib.systems.base import Shipped
    from serlib.systems.registry import shipping_as

    try:
        return shipping_as(entry.kind).predictor(Shipped(entry.meta, tensors))
    except ShippedModelError:
        raise
    except Exception as exc:  # tensors that do not fit the recorded network, a sidecar missing a key...
        raise ShippedModelError(f"shipped model {entry.name!r} does not load ({type(exc).__name__}: "
                                f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from None


# ----------------------------------------------------------------------------- linear heads in run folders


# ----------------------------------------------------------------------------- export


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ShippedModelError(f"{path}: cannot be read ({type(exc).__name__}: {exc})") from None


def _run_config(run: Path) -> dict[str, Any]:
    """The run folder's resolved ``config.yaml`` as a dict (empty when the folder has none)."""
    import yaml

    return yaml.safe_load((run / "config.yaml").read_text()) if (run / "config.yaml").is_file() else {}


def _run_identity(run: Path, prov: dict[str, Any], metrics: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """Corpus, protocol, model, fold, seed of a run folder (``<corpus>/<protocol>/<model>/fold-<k>/seed-<s>``)."""
    parts = run.resolve().parts
    in_layout = len(parts) >= 5 and re.fullmatch(r"fold-\d+", parts[-2]) and re.fullmatch(r"seed-\d+", parts[-1])
    fold = prov.get("fold")
    if fold is None and in_layout:
        fold = int(parts[-2].split("-")[1])
    data = config.get("data", {})
    return {"corpus": data.get("corpus"), "protocol": prov.get("protocol") or data.get("protocol"),
            "model": parts[-3] if in_layout else metrics.get("model"), "fold": fold,
            "seed": prov.get("seed", config.get("seed")),
            "source_run": "/".join(parts[-5:]) if in_layout else run.name}  # relative: no machine paths


def protocol_figures(run_folder: str | Path, *, n_resamples: int = 2000) -> dict[str, Any] | None:
    """The figures of a run's system on its whole protocol, read from the sibling run folders.

    For ``<results>/<corpus>/<protocol>/<system>/fold-k/seed-s`` every finished
    run of ``<system>`` under that protocol counts: the mean and sample std over
    folds of the per-fold mean over seeds, and the pooled test UAR (all folds of
    a seed scored as one set, mean over seeds, seeds with every fold only) with
    its 95 % interval resampling test speakers. ``None`` outside that layout or
    without finished runs.
    """
    import pandas as pd

    from serlib.evaluation.folds import mean_of_folds
    from serlib.evaluation.stats import StatsError, load_predictions, speaker_bootstrap

    run = Path(run_folder).resolve()
    if not (re.fullmatch(r"fold-\d+", run.parent.name) and re.fullmatch(r"seed-\d+", run.name)):
        return None
    system_dir = run.parent.parent
    finished = sorted(system_dir.glob("fold-*/seed-*/metrics.json"))
    if not finished:
        return None
    runs = pd.DataFrame([{"fold": int(path.parent.parent.name.split("-")[1]),
                          "seed": int(path.parent.name.split("-")[1]),
                          "test_uar": float(_read_json(path)["test"]["uar"])} for path in finished])
    mean, std, folds = mean_of_folds(runs)
    uars = runs.groupby("fold")["seed"].apply(set)
    seeds = sorted(set.intersection(*uars))
    figures: dict[str, Any] = {
        "system": system_dir.name, "folds": folds, "seeds": seeds, "mean_of_folds": mean,
        "std_of_folds": std if folds > 1 else None, "computed_from": "/".join(system_dir.parts[-3:]),
    }
    try:
        folders = [system_dir / f"fold-{f}" / f"seed-{s}" for f in sorted(uars.index) for s in seeds]
        predictions = load_predictions(folders)
        boot = speaker_bootstrap(predictions, n_resamples=n_resamples, seed=0)
        figures.update(pooled_uar=float(boot.uar), pooled_ci95=[float(boot.ci_low), float(boot.ci_high)],
                       test_speakers=int(predictions["speaker"].astype(str).nunique()))
    except (StatsError, KeyError, ValueError) as err:
        figures["pooled_error"] = " ".join(str(err).split())[:200]
    return figures


CROSS_CORPUS_GROUP = "six-corpora-4-classes"
"""The report's cross-corpus study whose figures a model card quotes (the classes every corpus shares)."""


def cross_corpus_figures(results: str | Path, corpus: str) -> dict[str, Any] | None:
    """The report's cross-corpus row of ``corpus``: the Whisper-base logistic-regression head trained on its fold 1
    (the 4 shared classes, no test-corpus standardisation), tested on every other corpus; ``None`` when absent."""
    path = Path(results) / "cross-corpus" / "whisper-logreg" / CROSS_CORPUS_GROUP / f"{corpus}-none.json"
    if not path.is_file():
        return None
    row = _read_json(path)
    return {"system": "whisper-logreg", "system_label": REGISTRY["whisper-logreg"].label,
            "classes": list(row["request"]["classes"]), "source": "/".join(path.parts[-4:]),
            "uar": {c: float(v["uar"]) for c, v in row["test"].items()}}


def held_out_figures(results: str | Path, system: str, protocol: str) -> dict[str, Any] | None:
    """A leave-one-corpus-out system's pooled UAR (mean over seeds) on each corpus held out in turn, and their
    mean; ``None`` when ``protocol`` is not one of :data:`serlib.data.splits.LOCO_CLASSES`."""
    from serlib.data.splits import LOCO_CLASSES

    if protocol not in LOCO_CLASSES:
        return None
    uar = {}
    for corpus_dir in sorted(p for p in Path(results).iterdir() if (p / protocol / system).is_dir()):
        first = next(iter(sorted((corpus_dir / protocol / system).glob("fold-*/seed-*"))), None)
        figures = protocol_figures(first, n_resamples=200) if first is not None else None
        if figures and figures.get("pooled_uar") is not None:
            uar[corpus_dir.name] = figures["pooled_uar"]
    return {"system": system, "protocol": protocol, "classes": list(LOCO_CLASSES[protocol]), "uar": uar,
            "mean": float(np.mean(list(uar.values()))) if uar else None} if uar else None


def record_protocol_figures(entry: ShippedModel, results: str | Path) -> dict[str, Any] | None:
    """Write :func:`protocol_figures` of a shipped model's source run (under ``results``), and its corpus's
    :func:`cross_corpus_figures`, into its sidecar.

    Only the sidecar's ``protocol_results`` and ``cross_corpus`` change; the
    weights and their checksum stay as they are.
    """
    from serlib.core.files import atomic_write

    source = entry.meta.get("source_run")
    figures = protocol_figures(Path(results) / str(source)) if source else None
    if figures is None:
        return None
    meta = {**entry.meta, "protocol_results": figures,
            "cross_corpus": cross_corpus_figures(results, str(entry.meta.get("corpus")))}
    held_out = held_out_figures(results, str(entry.meta.get("model")), str(entry.meta.get("protocol")))
    if held_out is not None:  # a model trained on several corpora: how the same recipe did on each held out
        meta.update(cross_corpus=None, held_out=held_out)
    text = json.dumps(meta, indent=2, default=str) + "\n"
    atomic_write(entry.sidecar, lambda tmp: tmp.write_text(text, encoding="utf-8"), "the models folder")
    entry.meta.update(meta)
    return figures


def export_run(run_folder: str | Path, name: str, *, out_dir: str | Path | None = None, dtype: str = "float16",
               max_bytes: int = MAX_BYTES, half_min_values: int = HALF_MIN_VALUES) -> ShippedModel:
    """Turn a finished run folder into ``<out_dir>/<name>.safetensors`` + ``<name>.json``.

    Parameters
    ----------
    run_folder
        A finished run (with ``metrics.json``) of ``tier1`` (any Tier-1 name, with
        its best checkpoint), ``whisper-logreg`` or ``whisper-mlp`` (with ``head.safetensors``),
        or a fusion of the last two kinds (its components' runs beside it, as above).
    name
        The shipped name (letters, digits, ``_ + -``), e.g. ``ravdess``.
    out_dir
        Default :data:`MODELS_DIR`.
    dtype
        ``float16``: tensors of ``half_min_values`` values or more in float16, the
        rest in float32 (see the module docstring); ``float32``: everything.
    max_bytes
        Refuse to write a weights file larger than this.
    half_min_values
        The float16 threshold (tests use 0: every matrix in float16).

    Raises
    ------
    ShippedModelError
        Not a finished run, an unsupported model, a missing checkpoint or head, too large.
    """
    from safetensors.numpy import save

    from serlib import __version__
    from serlib.core.files import atomic_write

    if not _NAME.fullmatch(name):
        raise ShippedModelError(f"--name {name!r}: use letters, digits, _ + - (e.g. ravdess)")
    if dtype not in DTYPES:
        raise ShippedModelError(f"dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    half = half_min_values if dtype == "float16" else None
    run = Path(run_folder)
    if not (run / "metrics.json").is_file():
        raise ShippedModelError(f"{run} is not a finished run folder (no metrics.json)")
    metrics = _read_json(run / "metrics.json")
    prov = _read_json(run / "provenance.json") if (run / "provenance.json").is_file() else {}
    model = str(metrics.get("model", ""))
    from serlib.systems.registry import system_for_run

    try:
        system = system_for_run(model)
    except ValueError:
        system = None
    shipped = system.export(run, half) if system is not None else None
    if system is None or shipped is None:
        raise ShippedModelError(f"{run}: a {model or 'unknown'} run cannot be shipped (only tier1 networks, "
                                "whisper-logreg and whisper-mlp heads, and their fusions)")
    kind, tensors, extra = system.ships_as, shipped.tensors, shipped.meta
    config = extra["config"] if kind == "tier1" else _run_config(run)
    if kind in ("encoder-head", "encoder-mlp"):
        extra["config"] = config
    checkpoint_commit = extra.pop("_commit", None)
    commit = prov.get("git_commit") or checkpoint_commit
    test = metrics.get("test", {})
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "name": name, "kind": kind,
        "weights": f"{name}.safetensors", "weights_dtype": dtype,
        "stored_dtypes": sorted({str(getattr(t, "dtype", type(t).__name__)).replace("torch.", "")
                                 for t in tensors.values()}),
        "weights_precision": (f"float16 for tensors of >= {half} values, float32 for the rest" if half is not None
                              else "float32"),
        **_run_identity(run, prov, metrics, config),
        "test_uar": test.get("uar"), "test_accuracy": test.get("accuracy"), "test_uar_ci95": metrics.get("test_uar_ci95"),
        "n_test": (metrics.get("sizes") or {}).get("test"), "best_val_uar": metrics.get("best_val_uar"),
        "data_fingerprint": prov.get("data_fingerprint"), "git_commit": commit, "exported_by": f"serlib {__version__}",
        "training_corpora": [c for c, n in (prov.get("training_clips_by_corpus") or {}).items() if n],
        "protocol_results": protocol_figures(run),
        **extra,
    }
    # one metadata key: safetensors writes several in a random order, and an export must be reproducible
    header = {"serlib": json.dumps({"format": FORMAT, "name": name, "kind": kind}, sort_keys=True)}
    blob = save(tensors, metadata=header)
    if len(blob) > max_bytes:  # checked before writing: a shipped model of the same name is left as it was
        raise ShippedModelError(f"{name}.safetensors would be {len(blob) / 1e6:.2f} MB, over the "
                                f"{max_bytes / 1e6:.2f} MB limit of a shipped model")
    meta["weights_bytes"] = len(blob)
    meta["weights_sha256"] = hashlib.sha256(blob).hexdigest()
    out = _models_dir(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weights = out / f"{name}.safetensors"
    atomic_write(weights, lambda tmp: tmp.write_bytes(blob), "the models folder")
    text = json.dumps(meta, indent=2, default=str) + "\n"
    atomic_write(out / f"{name}.json", lambda tmp: tmp.write_text(text, encoding="utf-8"), "the models folder")
    return ShippedModel(name, meta, out / f"{name}.json")


# ----------------------------------------------------------------------------- checking an export


def check_reproduction(model: ShippedModel, run_folder: str | Path, data_root: str | Path | None = None,
                       *, record: bool = False) -> dict[str, Any]:
    """Predict the run's test clips from their audio with the shipped file and compare with ``predictions.csv``.

    Parameters
    ----------
    model
        What :func:`export_run` returned (or :func:`find_model` finds).
    run_folder
        The run it was exported from.
    data_root
        The corpus folder, or a folder holding one folder per corpus (default ``$SERLIB_DATA``).
    record
        Also write the result into the sidecar (``"reproduction"``; the weights and their sha256 are unchanged).

    Returns
    -------
    dict
        ``clips``, ``max_abs_probability_difference`` (over every clip and class; the
        CSV holds 5 decimals), ``labels_agree`` (fraction of clips with the same label).
    """
    import pandas as pd

    from serlib.data.corpora import read_corpus
    from serlib.features.prepared import locate_corpus

    run = Path(run_folder)
    preds = pd.read_csv(run / "predictions.csv", dtype={"utt_id": str})
    columns = [f"p_{lab}" for lab in model.labels]
    missing = [c for c in columns if c not in preds.columns]
    if missing:
        raise ShippedModelError(f"{run}/predictions.csv has no probability column(s) {', '.join(missing)}")
    corpus = str(model.meta["corpus"])
    include_song = bool(((model.meta.get("config") or {}).get("data") or {}).get("include_song", False))
    manifest = read_corpus(corpus, locate_corpus(corpus, data_root), include_song=include_song).manifest
    paths = manifest.set_index("utt_id")["path"]
    absent = [u for u in preds["utt_id"] if u not in paths.index]
    if absent:
        raise ShippedModelError(f"{len(absent)} test clip(s) of the run are not in this copy of {corpus} "
                                f"(e.g. {absent[0]})")
    got = load_shipped(model.sidecar).predict_files(paths.loc[preds["utt_id"]].tolist())
    result = {"clips": int(len(preds)),
              "max_abs_probability_difference": float(abs(got[columns].to_numpy() - preds[columns].to_numpy()).max()),
              "labels_agree": float((got["label"].to_numpy() == preds["predicted"].astype(str).to_numpy()).mean()),
              "compared_with": "the run's predictions.csv (probabilities rounded to 5 decimals), "
                               "test clips featurised from their audio"}
    if record:
        from serlib.core.files import atomic_write

        meta = {**_read_sidecar(model.sidecar), "reproduction": result}
        text = json.dumps(meta, indent=2, default=str) + "\n"
        atomic_write(model.sidecar, lambda tmp: tmp.write_text(text, encoding="utf-8"), "the models folder")
    return result


# ----------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m serlib.serve.shipped export RUN_FOLDER --name NAME [--check [DATA_ROOT]]`` | ``list``."""
    from serlib.data.audio import AudioError

    parser = argparse.ArgumentParser(prog="python -m serlib.serve.shipped", description="Export and list shipped models.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("export", help="turn a finished run folder into a shipped model")
    p.add_argument("run_folder")
    p.add_argument("--name", required=True, help="shipped name, e.g. ravdess")
    p.add_argument("--out", default=None, help=f"folder (default: {MODELS_DIR})")
    p.add_argument("--check", nargs="?", const="", default=None, metavar="DATA_ROOT",
                   help="then predict the run's test clips from their audio (under DATA_ROOT, default $SERLIB_DATA) "
                        "and record the largest probability difference from predictions.csv in the sidecar")
    p.add_argument("--dtype", choices=DTYPES, default="float16",
                   help="float16: tensors of >= --half-min-values values in half precision, the rest in float32 "
                        "(default); float32: everything")
    p.add_argument("--half-min-values", type=int, default=HALF_MIN_VALUES, metavar="N",
                   help=f"with float16, the smallest matrix stored in half precision (default {HALF_MIN_VALUES}); "
                        "lower it to bring a model under the size limit, and measure the cost with --check")
    sub.add_parser("list", help="list the shipped models")
    p = sub.add_parser("protocol-figures", help="record each shipped model's system figures on its whole protocol "
                                                "(mean ± std of folds, pooled UAR with its speaker CI) in its sidecar, "
                                                "read from the run folders; the weights are not touched")
    p.add_argument("--results", default=None, help="results folder (default: $SERLIB_RESULTS or ./results)")
    sub.add_parser("cards", help="write every shipped model's card into the models README")
    args = parser.parse_args(argv)
    try:
        if args.command == "export":
            entry = export_run(args.run_folder, args.name, out_dir=args.out, dtype=args.dtype,
                               half_min_values=args.half_min_values)
            m = entry.meta
            print(f"{entry.weights} ({m['weights_bytes'] / 1e6:.2f} MB, {m['weights_dtype']}) + {entry.sidecar.name}: "
                  f"{m['kind']} {m['corpus']} {m['protocol']} fold {m['fold']} seed {m['seed']}, "
                  f"test UAR {m['test_uar']:.4f}")
            if args.check is not None:
                r = check_reproduction(entry, args.run_folder, args.check or None, record=True)
                print(f"checked on {r['clips']} test clip(s) from their audio: probabilities within "
                      f"{r['max_abs_probability_difference']:.1e} of predictions.csv, "
                      f"{r['labels_agree'] * 100:.1f}% of the labels agree")
        elif args.command == "cards":
            from serlib.serve.cards import write_readme_cards

            write_readme_cards(MODELS_DIR / "README.md", list_models())
            print(f"{MODELS_DIR / 'README.md'}: {len(list_models())} model card(s)")
        elif args.command == "protocol-figures":
            from serlib.core.runs import default_results_dir

            results = Path(args.results) if args.results else default_results_dir()
            for entry in list_models():
                figures = record_protocol_figures(entry, results)
                print(f"{entry.name}: " + (f"{figures['folds']} folds, mean {100 * figures['mean_of_folds']:.1f} %, "
                                           f"pooled {100 * figures.get('pooled_uar', float('nan')):.1f} %"
                                           if figures else "no run folders of its system found; left as it was"))
        else:
            for entry in list_models():
                s = entry.summary()
                print(f"{s['name']}\t{s['kind']}\t{s['corpus']}\t{s['protocol']}\t{','.join(s['classes'])}\t"
                      f"{s['mean_of_folds']}\t{s['pooled_uar']}")
    except (ShippedModelError, AudioError, ValueError, RuntimeError, OSError) as err:
        print(f"python -m serlib.serve.shipped {args.command}: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    return 0


__all__ = ["MODELS_DIR", "MAX_BYTES", "ShippedModelError", "ShippedModel", "list_models", "find_model",
           "HALF_MIN_VALUES", "is_shipped_name", "load_shipped", "check_reproduction", "read_tensors", "export_run",
           "protocol_figures", "record_protocol_figures", "cross_corpus_figures"]


if __name__ == "__main__":
    sys.exit(main())
