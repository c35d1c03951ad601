"""Whisper-base heads trained on several corpora: ``whisper-logreg-multi``, ``whisper-mlp-multi``,
``whisper-mlp-twostage-multi`` and ``whisper-logreg-loco-multi``.

The heads of :mod:`serlib.systems.whisper_linear` and :mod:`serlib.systems.whisper_mlp`,
trained on the target corpus's training speakers plus every clip of the corpora
in ``data.extra_train`` (their recipe, ``configs/models/multi.yaml``, lists the
six corpora; a corpus is never its own extra). The table, the class handling
(``encoder.extra_classes``) and the per-corpus standardisation
(``encoder.corpus_norm``) are :mod:`serlib.features.multi_corpus`'s. Validation
and test are the target corpus's own speakers (validation speakers carved from
the extra corpora when the target is held out whole: leave-one-corpus-out).

``whisper-logreg-loco-multi`` is ``whisper-logreg-multi`` choosing its layer and ``C`` on the training corpora
held out in turn (:func:`select_on_corpora`) rather than on validation speakers: a choice judged by corpora the
head does not train on, as a new corpus will judge it.

``whisper-mlp-twostage-multi`` is ``whisper-mlp-multi`` trained on, in addition, the corpus's own training speakers
alone (:func:`own_stage`): the other corpora as a starting point, the corpus itself as the last word. Validation
speakers decide whether the second stage is kept. It is post hoc: it was designed after the in-corpus test results of
``whisper-mlp-multi`` were seen.

In an MLP run, a held-out corpus's test clips are scored twice: standardised with the
training statistics (inductive: the run's ``predictions.csv``) and with their
own (transductive: ``predictions-own-statistics.csv`` and ``test_own_statistics``
in ``metrics.json``).

The saved head has the single-corpus head's format, with the standardisation
folded into its input statistics and masked outputs removed, so it predicts
files and ships exactly like them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from serlib.features.multi_corpus import (
    MultiCorpusTable,
    build_table,
    corpus_weights,
    fold_statistics,
    standardise,
    training_classes,
)

if TYPE_CHECKING:  # pragma: no cover
    from serlib.config import Config
    from serlib.features.prepared import Prepared

OWN_STATISTICS_FILE = "predictions-own-statistics.csv"
MULTI_BATCH = 256
"""The MLP head's batch: its table holds about 12,000 training clips, twenty times a single corpus's, so
batches are eight times the single-corpus head's 32 (an epoch then takes about 0.4 s on one CPU thread)."""


def multi_corpus_table(prepared: "Prepared", split: pd.Series, config: "Config", *,
                       progress: bool = False) -> MultiCorpusTable:
    """The target corpus's usable clips under ``split`` and every extra corpus's, with their pooled features."""
    from serlib.features.encoders.pooled import compute_embeddings
    from serlib.features.prepared import SPLIT_SEED
    from serlib.systems.whisper_linear import aligned_features, encoder_embeddings, prepared_cache_root

    if not prepared.extra:
        raise ValueError("a -multi system trains on other corpora too: data.extra_train is empty")
    enc = config.encoder
    memo = prepared.__dict__.setdefault("_extra_embeddings", {})
    extras = {}
    for corpus, fs in prepared.extra.items():
        key = (corpus, enc.backend, enc.mode, enc.compute_type)
        if key not in memo:
            memo[key] = compute_embeddings(fs.manifest, backend=enc.backend, mode=enc.mode,
                                           compute_type=enc.compute_type, cache_dir=prepared_cache_root(prepared),
                                           threads=config.train.num_threads or None, progress=progress)
        usable = fs.usable
        extras[corpus] = (usable, aligned_features(memo[key], usable), fs.fingerprint)
    usable = prepared.features.usable
    target = aligned_features(encoder_embeddings(prepared, config, progress=progress), usable)
    return build_table(usable, split, target, config.data.corpus, extras, val_fraction=config.data.val_fraction,
                       seed=SPLIT_SEED)


def _provenance(prepared: "Prepared", table: MultiCorpusTable, config: "Config", std, classes: list[str],
                outputs: list[str], extra: dict[str, Any]) -> dict[str, Any]:
    """What a -multi run records besides the shared fields: the encoder, every training corpus, the choices made."""
    from serlib.systems.whisper_linear import encoder_embeddings

    embeddings = encoder_embeddings(prepared, config)  # memoised: the target corpus's, read once
    train = (table.assignment == "train").to_numpy()
    counts = pd.Series(table.corpus[train]).value_counts()
    return {"encoder": {**embeddings.encoder, "embedding_cache": embeddings.key}, "feature_cache": embeddings.key,
            "extra_train": dict(table.fingerprints),
            "training_clips_by_corpus": {c: int(counts.get(c, 0)) for c in dict.fromkeys(table.corpus)},
            "extra_classes": config.encoder.extra_classes, "masked_classes": outputs[len(classes):],
            "corpus_norm": config.encoder.corpus_norm, "corpus_weight": config.encoder.corpus_weight,
            "statistics": {c: {"clips": n, "from": how} for c, (n, how) in std.per_corpus.items()},
            **extra}


def _own_statistics_report(out: Path, table: MultiCorpusTable, test_rows: np.ndarray, classes: list[str],
                           probs: np.ndarray) -> dict[str, Any]:
    """Write the transductive predictions of a held-out corpus; returns their report."""
    from serlib.evaluation.metrics import classification_report_dict

    y_true = table.usable["label"].to_numpy()[test_rows].astype(str)
    y_pred = np.asarray(classes)[probs.argmax(1)]
    frame = pd.DataFrame({"utt_id": table.usable["utt_id"].to_numpy()[test_rows].astype(str),
                          "speaker": table.usable["speaker"].to_numpy()[test_rows].astype(str),
                          "true": y_true, "predicted": y_pred})
    for k, c in enumerate(classes):
        frame[f"p_{c}"] = probs[:, k].round(5)
    frame.to_csv(out / OWN_STATISTICS_FILE, index=False)
    return classification_report_dict(list(y_true), list(y_pred), classes)


def _training_table(prepared: "Prepared", split: pd.Series, config: "Config", progress: bool):
    """The multi-corpus table of ``split``, the target's classes, the head's outputs and the standardised features."""
    from serlib.systems.base import select_classes

    table = multi_corpus_table(prepared, split, config, progress=progress)
    classes = select_classes(prepared.features.usable, config.data.classes)
    outputs = training_classes(classes, table, config.encoder.extra_classes)
    return table, classes, outputs, standardise(table, config.encoder.corpus_norm)


def training_weights(table: MultiCorpusTable, outputs: list[str], how: str) -> np.ndarray:
    """One weight per row of ``table``: :func:`~serlib.features.multi_corpus.corpus_weights` over the clips a head
    trains on (the training rows of the classes in ``outputs`` that have features), 1 elsewhere. A corpus's clips
    of dropped classes never count towards its share."""
    ok = ~np.isnan(table.features).any(axis=(1, 2))
    rows = np.flatnonzero((table.assignment == "train").to_numpy() & table.usable["label"].isin(outputs).to_numpy()
                          & ok)
    weights = np.ones(len(table.usable))
    weights[rows] = corpus_weights(table.corpus[rows], how, table.target)
    return weights


CORPORA_C_GRID: tuple[float, ...] = (0.0003, 0.001, 0.003, 0.01, 0.1, 1.0)
"""``C`` values tried when choosing on held-out corpora: the speaker grid's four and two below (choices that must
carry to another corpus favour stronger regularisation)."""


def select_on_corpora(features: np.ndarray, table: MultiCorpusTable, classes: list[str],
                      candidates: list[int | str], *, c_grid: tuple[float, ...] = CORPORA_C_GRID, seed: int = 0,
                      train_classes: list[str] | None = None,
                      corpus_weight: str = "balanced") -> tuple[int | str, tuple[float], dict[str, Any]]:
    """The layer and ``C`` a head for unseen corpora should use, chosen by leaving each training corpus out in turn.

    For every corpus with training clips: fit the logistic head on the training clips of the
    others (corpus weights recomputed among them) and score its UAR on that corpus's training and
    validation clips of the classes the others have (test clips are never read; a held-out target
    corpus has no others; a corpus sharing fewer than two classes with the others is not scored). The pair
    with the highest mean UAR over the held-out corpora wins; ties go to the earlier layer,
    then the smaller ``C``. Returns the layer, ``(C,)`` and every pair's scores per corpus.
    """
    from serlib.systems.whisper_linear import layer_matrix, validation_uar

    corpus = table.corpus
    part = table.assignment.to_numpy()
    labels = table.usable["label"].to_numpy().astype(str)
    fitted = np.isin(labels, train_classes or classes) & (part == "train")
    scored = np.isin(labels, classes) & np.isin(part, ("train", "val"))
    held_out = list(dict.fromkeys(corpus[fitted]))
    if len(held_out) < 2:
        raise ValueError("choosing on held-out corpora needs at least two training corpora, not "
                         f"{len(held_out)}: list others in data.extra_train")
    search: dict[str, Any] = {}
    best, best_score = None, -1.0
    for layer in candidates:
        X = layer_matrix(features, layer)
        ok = ~np.isnan(X).any(axis=1)
        for c in c_grid:
            per = {}
            for name in held_out:
                train = np.flatnonzero(fitted & ok & (corpus != name))
                shared = [k for k in classes if k in set(labels[train])]  # what the others can teach
                val = np.flatnonzero(scored & ok & (corpus == name) & np.isin(labels, shared))
                if len(set(labels[val])) < 2:
                    continue  # the others share fewer than two of its classes: no score to take
                weights = np.ones(len(labels))
                weights[train] = corpus_weights(corpus[train], corpus_weight)
                per[name] = round(validation_uar(X, labels, {"train": train, "val": val}, "logreg", c, seed, shared,
                                                 weights), 4)
            if not per:
                raise ValueError("no training corpus shares two classes with the others: nothing to choose on")
            mean = float(np.mean(list(per.values())))
            search[f"layer-{layer}/C={c:g}"] = {"mean": round(mean, 4), **per}
            if mean > best_score + 1e-12:
                best, best_score = (layer, c), mean
    assert best is not None
    return best[0], (best[1],), search


def own_stage(model: Any, X: dict[str, np.ndarray], y: dict[str, np.ndarray], own: np.ndarray, n_outputs: int,
              seed: int, scored: int, history: list[dict]) -> tuple[Any, list[dict], dict[str, Any]]:
    """The second stage of ``whisper-mlp-twostage-multi``: ``model`` (trained on every corpus) trained on, in
    addition, the training clips ``own`` (a mask over ``X["train"]``: the target corpus's own speakers) alone.

    The single-corpus head's schedule (batch, learning rate, early stopping on the same validation speakers) from the
    first stage's weights. The second stage is kept only when its best validation UAR beats the first's (a tie keeps
    the first). Returns the model kept, the two stages' histories joined and what was kept with both stages' best
    validation UAR. Second-stage rows carry ``"stage": 2`` and number their epochs on from the first stage's last
    epoch, although they start from its best epoch's weights.
    """
    import copy

    import torch

    from serlib.systems.whisper_mlp import BATCH, train_head

    first = max(h["val_uar"] for h in history)
    tuned = copy.deepcopy(model)
    tensors = {"train": torch.from_numpy(X["train"][own]), "val": torch.from_numpy(X["val"])}
    tuned, second = train_head(tuned, lambda part, rows: tuned(tensors[part][torch.from_numpy(np.asarray(rows))]),
                               {"train": y["train"][own], "val": y["val"]}, n_outputs, seed, scored=scored)
    best = max(h["val_uar"] for h in second)
    kept = best > first
    joined = history + [{**h, "epoch": len(history) + h["epoch"], "stage": 2} for h in second]
    return (tuned if kept else model), joined, {"first_val_uar": round(first, 4), "second_val_uar": round(best, 4),
                                                "own_training_clips": int(own.sum()), "batch": BATCH,
                                                "kept": kept}


def fit_mlp_multi(prepared: "Prepared", split: pd.Series, config: "Config", out: Path, *,
                  extra: dict[str, Any], progress: bool = False, then_own: bool = False) -> dict[str, Any]:
    """Train and test the layer-weighted MLP head on the multi-corpus table of one split; writes the run folder.

    ``then_own`` (``whisper-mlp-twostage-multi``): each head is then trained on the corpus's own training speakers
    alone (:func:`own_stage`), kept when validation speakers prefer it.
    """
    import torch

    from serlib.systems.base import split_rows
    from serlib.systems.whisper_mlp import (
        DROPOUT,
        HIDDEN,
        LR,
        PATIENCE,
        WEIGHT_DECAY,
        choose_layers,
        save_mlp_head,
        train_mlp,
        write_head_run,
    )

    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    table, classes, outputs, std = _training_table(prepared, split, config, progress)
    ok = ~np.isnan(table.features).any(axis=(1, 2))
    rows = split_rows(table.usable, table.assignment, classes)
    rows["train"] = split_rows(table.usable, table.assignment, outputs)["train"]
    rows = {p: r[ok[r]] if p != "test" else r for p, r in rows.items()}
    for part in ("train", "val", "test"):
        if len(rows[part]) == 0:
            raise ValueError(f"{'whisper-mlp-twostage-multi' if then_own else 'whisper-mlp-multi'}: the {part} part "
                             f"has no clips of the classes {classes}")
    code = {c: i for i, c in enumerate(outputs)}
    labels = table.usable["label"].to_numpy()
    y = {p: np.array([code[v] for v in labels[r]], dtype=np.int64) for p, r in rows.items()}
    mean, sd = std.X[rows["train"]].mean(axis=0), std.X[rows["train"]].std(axis=0) + 1e-5
    X = {p: np.nan_to_num((std.X[r] - mean) / sd).astype(np.float32) for p, r in rows.items()}
    k = len(classes)
    weights = training_weights(table, outputs, config.encoder.corpus_weight)[rows["train"]]
    own_rows = table.corpus[rows["train"]] == table.target
    if then_own and not own_rows.any():
        raise ValueError("whisper-mlp-twostage-multi trains its second stage on the corpus's own training speakers, "
                         "and a held-out corpus has none: use whisper-mlp-multi")
    stages: dict[tuple[int, ...], dict[str, Any]] = {}

    def train_option(layers: list[int]):
        x = {p: v[:, layers] for p, v in X.items()}
        model, history = train_mlp(x, y, len(outputs), config.seed, scored=k, batch=MULTI_BATCH,
                                   sample_weights=weights)
        if not then_own:
            return model, history
        model, history, stages[tuple(layers)] = own_stage(model, x, y, own_rows, len(outputs), config.seed, k,
                                                          history)
        return model, history

    chosen, layers, model, history, search = choose_layers(X["train"].shape[1], config.encoder.layer, train_option)
    X = {p: x[:, layers] for p, x in X.items()}

    def probabilities(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.softmax(model(torch.from_numpy(x))[:, :k], dim=1).numpy()

    probs, val_pred = probabilities(X["test"]), probabilities(X["val"]).argmax(1)
    raw_mean, raw_std = fold_statistics(std.test_mean[layers], std.test_std[layers], mean[layers], sd[layers])
    save_mlp_head(out / "head.safetensors", model, layers, raw_mean, raw_std, scored=k)
    own = {}
    if not (table.assignment[table.corpus == table.target] == "train").any():  # a held-out corpus
        own_std = standardise(table, config.encoder.corpus_norm, own_test_statistics=True)
        x_own = np.nan_to_num((own_std.X[rows["test"]] - mean) / sd).astype(np.float32)[:, layers]
        own["test_own_statistics"] = _own_statistics_report(out, table, rows["test"], classes, probabilities(x_own))
    return write_head_run(out, config, prepared, table.usable, classes=classes, rows=rows, y=y, probs=probs,
                          val_pred=val_pred, history=history, metrics={
        "model": "whisper-mlp-twostage-multi" if then_own else "whisper-mlp-multi", "input_layers": chosen,
        "layers": layers, "layer_search": search,
        "layer_weights": [round(float(w), 4) for w in model.layer_weights().detach()],
        "training_classes": outputs, **own, **({"second_stage": stages[tuple(layers)]} if then_own else {}),
        "head": {"hidden": HIDDEN, "dropout": DROPOUT, "lr": LR, "weight_decay": WEIGHT_DECAY, "batch": MULTI_BATCH,
                 "patience": PATIENCE},
        "feature_set": f"whisper-base/{config.encoder.mode}/{'all-layers' if chosen == 'all' else chosen}"},
        provenance={**_provenance(prepared, table, config, std, classes, outputs, extra),
                    "wall_seconds": round(time.perf_counter() - start, 2)})


def fit_logreg_multi(prepared: "Prepared", split: pd.Series, config: "Config", out: Path, *,
                     extra: dict[str, Any], progress: bool = False, select_on: str = "speakers") -> dict[str, Any]:
    """Train and test the logistic-regression head on the multi-corpus table of one split; writes the run folder.

    ``select_on`` is where the layer and ``C`` are chosen: ``"speakers"``, the validation speakers
    (``whisper-logreg-multi``); ``"corpora"``, each training corpus held out in turn
    (:func:`select_on_corpora`; ``whisper-logreg-loco-multi``, for corpora it never trained on).
    """
    from serlib.systems.linear import fit_linear_head
    from serlib.systems.whisper_linear import HEAD_C_GRID, layer_candidates, layer_matrix, select_layer

    table, classes, outputs, std = _training_table(prepared, split, config, progress)
    # single layers only: a mean over standardised layers is no standardisation of the raw layers' mean,
    # so it could not be folded into the saved head
    candidates = [c for c in layer_candidates(std.X.shape[1], config.encoder.layer) if c != "mean"]
    weights = training_weights(table, outputs, config.encoder.corpus_weight)
    if select_on == "corpora":
        layer, c_grid, search = select_on_corpora(std.X, table, classes, candidates, c_grid=CORPORA_C_GRID,
                                                  seed=config.seed, train_classes=outputs,
                                                  corpus_weight=config.encoder.corpus_weight)
        provenance_choice = {"selected_on": "held-out training corpora", "corpus_search_uar": search}
    elif select_on == "speakers":
        c_grid = HEAD_C_GRID
        layer, search = (candidates[0], {}) if len(candidates) == 1 else select_layer(
            std.X, table.usable, table.assignment, classes, candidates, seed=config.seed, train_classes=outputs,
            sample_weight=weights)
        provenance_choice = {"layer_search_val_uar": search}
    else:
        raise ValueError(f"select_on={select_on!r}: use speakers or corpora")
    provenance = _provenance(prepared, table, config, std, classes, outputs, extra)
    metrics = fit_linear_head(
        layer_matrix(std.X, layer), table.usable, table.assignment, config, out, classifier="logreg",
        feature_set=f"whisper-base/{config.encoder.mode}/layer-{layer}", c_grid=c_grid,
        model_name="whisper-logreg-loco-multi" if select_on == "corpora" else "whisper-logreg-multi",
        data_fingerprint=prepared.fingerprint, classes=classes,
        feature_cache=provenance.pop("feature_cache"), train_classes=outputs, sample_weight=weights,
        input_statistics=(layer_matrix(std.test_mean[None], layer)[0], layer_matrix(std.test_std[None], layer)[0]),
        extra_provenance={"layer": str(layer), **provenance_choice, **provenance})
    return metrics


def fit(prepared: "Prepared", split: pd.Series, config: "Config", run_dir: Path, *, extra: dict[str, Any],
        resume: bool = True, progress: bool = False, head: str, select_on: str = "speakers",
        then_own: bool = False) -> dict[str, Any]:
    """Train and test the ``head`` (``mlp`` or ``logreg``) on one split of the multi-corpus table.

    ``select_on="corpora"`` (logistic head only) chooses the layer and ``C`` on held-out training corpora;
    ``then_own`` (MLP head only) adds the second stage on the corpus's own speakers (:func:`own_stage`).
    """
    if head == "mlp":
        return fit_mlp_multi(prepared, split, config, Path(run_dir), extra=extra, progress=progress,
                             then_own=then_own)
    return fit_logreg_multi(prepared, split, config, Path(run_dir), extra=extra, progress=progress,
                            select_on=select_on)


def predictor(source, *, head: str, select_on: str = "speakers", then_own: bool = False):
    """The saved head as a file predictor: the single-corpus head's (its standardisation is folded in)."""
    if head == "mlp":
        from serlib.systems.whisper_mlp import predictor as mlp_predictor

        return mlp_predictor(source)
    from serlib.systems.whisper_linear import predictor as linear_predictor

    return linear_predictor(source, classifier="logreg")


def export(run: Path, half_min_values: int | None, *, head: str, select_on: str = "speakers",
           then_own: bool = False):
    """The shipped form of a run: the single-corpus head's."""
    if head == "mlp":
        from serlib.systems.whisper_mlp import export as mlp_export

        return mlp_export(run, half_min_values)
    from serlib.systems.whisper_linear import export as linear_export

    return linear_export(run, half_min_values, classifier="logreg")


__all__ = ["CORPORA_C_GRID", "OWN_STATISTICS_FILE", "fit", "fit_logreg_multi", "fit_mlp_multi", "multi_corpus_table",
           "own_stage", "select_on_corpora", "training_weights", "predictor", "export"]
