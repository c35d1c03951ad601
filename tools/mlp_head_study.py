"""Validation-only variants of the whisper-mlp head on one corpus protocol; never scores a test clip.

    .venv/bin/python tools/mlp_head_study.py --corpus ravdess

For every fold of the corpus's primary protocol, trains the head on the mix of
every layer (the choice the report's runs make on RAVDESS) with seeds 0-2 under
each variant of its constants, and records the validation UAR of each seed (its
best epoch, so it is optimistic) and of the 3-seed ensemble (posteriors averaged).
Saves ``results/studies/encoder-heads/<corpus>-mlp-variants.json`` with the provenance.
"""

from __future__ import annotations

import argparse

import numpy as np

from serlib.systems import whisper_mlp as encoder_mlp
from serlib.experiments.batch import load_corpus_config
from serlib.systems.whisper_linear import aligned_features, encoder_embeddings
from serlib.features.prepared import prepare, split_for
from serlib.evaluation.metrics import unweighted_average_recall
from serlib.core.runs import PROJECT_ROOT, save_benchmark
from serlib.data.splits import n_folds

VARIANTS = {"as-run": {}, "dropout-0.5": {"DROPOUT": 0.5}, "hidden-512": {"HIDDEN": 512},
            "weight-decay-0.1": {"WEIGHT_DECAY": 0.1}}
SEEDS = (0, 1, 2)


def validation_posteriors(X: dict, y: dict, n_classes: int, seed: int, constants: dict) -> np.ndarray:
    """Train one head under ``constants`` (restored afterwards); its validation posteriors."""
    import torch

    saved = {k: getattr(encoder_mlp, k) for k in constants}
    try:
        for k, v in constants.items():
            setattr(encoder_mlp, k, v)
        model, _ = encoder_mlp.train_mlp(X, y, n_classes, seed)
    finally:
        for k, v in saved.items():
            setattr(encoder_mlp, k, v)
    with torch.no_grad():
        return torch.softmax(model(torch.from_numpy(X["val"])), dim=1).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default="ravdess")
    args = parser.parse_args()
    config = load_corpus_config(args.corpus)
    prepared = prepare(config, progress=False)
    usable = prepared.features.usable
    feats = aligned_features(encoder_embeddings(prepared, config), usable)
    ok = ~np.isnan(feats).any(axis=(1, 2))
    folds = {}
    for fold in range(n_folds(usable, config.data.protocol, corpus=config.data.corpus)):
        classes, rows, y = encoder_mlp.head_split(usable, split_for(prepared.features, config, fold), config, ok,
                                                  "study")
        mean, std = feats[rows["train"]].mean(0), feats[rows["train"]].std(0) + 1e-5
        X = {p: np.nan_to_num((feats[rows[p]] - mean) / std).astype(np.float32) for p in ("train", "val")}
        y = {p: y[p] for p in ("train", "val")}
        for name, constants in VARIANTS.items():
            probs = [validation_posteriors(X, y, len(classes), s, constants) for s in SEEDS]
            folds.setdefault(name, []).append({
                "fold": fold + 1, "val_uar_per_seed": [round(unweighted_average_recall(y["val"], p.argmax(1)), 4)
                                                       for p in probs],
                "val_uar_ensemble": round(unweighted_average_recall(y["val"], np.mean(probs, 0).argmax(1)), 4)})
            print(name, folds[name][-1], flush=True)
    summary = {name: {"mean_val_uar_single": round(float(np.mean([f["val_uar_per_seed"] for f in rows])), 4),
                      "mean_val_uar_ensemble": round(float(np.mean([f["val_uar_ensemble"] for f in rows])), 4)}
               for name, rows in folds.items()}
    print(summary)
    save_benchmark(PROJECT_ROOT / "results" / "studies" / "encoder-heads" / f"{args.corpus}-mlp-variants.json",
                   {"corpus": args.corpus, "protocol": config.data.protocol, "layers": "all (learned mix)",
                    "seeds": list(SEEDS), "variants": VARIANTS, "summary": summary, "folds": folds})


if __name__ == "__main__":
    main()
