"""Validation-only: which system, fused with the whisper-mlp head, helps it? Never scores a test clip.

    .venv/bin/python tools/fusion_partner_study.py --corpus ravdess

For every fold and seed 0-2 of the corpus's primary protocol, takes the
committed ``whisper-mlp`` run's head and two candidate partners: Tier-1+ (its
run's best checkpoint) and ComParE functionals + logistic regression (refitted
on the training speakers with the C its run chose). Records the validation UAR
of ``serlib.systems.fusion.fuse`` at every encoder weight (1.0 = the head alone), as the
mean over folds and seeds. The components' validation UARs are those of their
best epoch (optimistic), so only differences between weights are meaningful.
Saves ``results/studies/fusion/<corpus>-partners.json`` with the provenance.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from serlib.systems.linear import make_linear_classifier
from serlib.experiments.batch import load_corpus_config
from serlib.systems.whisper_linear import aligned_features, encoder_embeddings, prepared_cache_root
from serlib.systems.whisper_mlp import head_split
from serlib.features.prepared import prepare, split_for
from serlib.features.functionals import prepare_functionals
from serlib.systems.fusion import WEIGHTS, encoder_posteriors, fuse, network_posteriors
from serlib.evaluation.metrics import unweighted_average_recall
from serlib.core.runs import PROJECT_ROOT, save_benchmark
from serlib.data.splits import n_folds

SEEDS = (0, 1, 2)


def compare_posteriors(prepared, runs: Path, fold: int, rows: dict, classes: list[str]) -> np.ndarray:
    """ComParE + logistic regression, refitted on the training clips with its run's C; validation posteriors."""
    X = prepare_functionals(prepared.features.manifest, "compare", cache_dir=prepared_cache_root(prepared)).matrix(
        prepared.features.usable["utt_id"].astype(str))
    labels = prepared.features.usable["label"].to_numpy()
    C = json.loads((runs / "compare-logreg" / f"fold-{fold}" / "seed-0" / "metrics.json").read_text())["chosen_C"]
    train = rows["train"][~np.isnan(X[rows["train"]]).all(axis=1)]
    model = make_linear_classifier("logreg", C).fit(X[train], labels[train])
    return model.predict_proba(X[rows["val"]])[:, [list(model.classes_).index(c) for c in classes]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default="ravdess")
    args = parser.parse_args()
    config = load_corpus_config(args.corpus)
    runs = PROJECT_ROOT / "results" / args.corpus / config.data.protocol
    prepared = prepare(config, progress=False)
    usable = prepared.features.usable
    feats = aligned_features(encoder_embeddings(prepared, config), usable)
    ok = ~np.isnan(feats).any(axis=(1, 2))
    scores: dict[str, dict[str, list[float]]] = {"tier1plus": {}, "compare-logreg": {}}
    for fold in range(1, n_folds(usable, config.data.protocol, corpus=config.data.corpus) + 1):
        classes, rows, y = head_split(usable, split_for(prepared.features, config, fold - 1), config, ok, "study")
        ids = usable["utt_id"].to_numpy()[rows["val"]].astype(str)
        compare = compare_posteriors(prepared, runs, fold, rows, classes)
        for seed in SEEDS:
            run = f"fold-{fold}/seed-{seed}"
            mlp, _ = encoder_posteriors(runs / "whisper-mlp" / run, feats[rows["val"]], classes)
            plus, _ = network_posteriors(runs / "tier1plus" / run, prepared, ids, classes)
            for partner, probs in (("tier1plus", plus), ("compare-logreg", compare)):
                for w in WEIGHTS:
                    uar = unweighted_average_recall(y["val"], fuse(mlp, probs, w).argmax(1))
                    scores[partner].setdefault(str(w), []).append(round(float(uar), 4))
        print(fold, {p: s["1.0"][-1] for p, s in scores.items()}, flush=True)
    summary = {p: {w: round(float(np.mean(v)), 4) for w, v in s.items()} for p, s in scores.items()}
    print(json.dumps(summary, indent=1))
    save_benchmark(PROJECT_ROOT / "results" / "studies" / "fusion" / f"{args.corpus}-partners.json",
                   {"corpus": args.corpus, "protocol": config.data.protocol, "seeds": list(SEEDS),
                    "criterion": "validation UAR, mean over folds and seeds; encoder weight 1.0 = whisper-mlp alone",
                    "mean_val_uar_by_encoder_weight": summary, "per_run": scores})


if __name__ == "__main__":
    main()
