"""Tables, figures and generated text for the report notebooks.

The notebooks stay thin: they call these functions and display what comes back.
Everything here reads run folders and prepared corpora; nothing trains. Written
analysis is generated from the numbers of the runs (which classes fail, what
they are confused with, how far folds spread), never typed in beforehand.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import yaml

from .config import Config
from .corpora import CORPORA, DISPLAY_NAMES
from .experiment import Prepared, fold_count, pooled_report, split_for, summarize_runs
from .metrics import mean_std, most_confused_pairs, per_class_table
from .runs import list_runs, read_json

PRIMARY_PROTOCOL = {"ravdess": "emobox", "emodb": "emobox", "urdu": "speaker-cv", "cremad": "speaker-split",
                    "savee": "emobox", "tess": "emobox", "iemocap": "emobox"}
SPEAKER_INDEPENDENT = {("emodb", "emobox"): False, ("cremad", "emobox"): False, ("tess", "emobox"): False,
                       ("urdu", "emobox"): False}


def reference_results() -> dict[str, Any]:
    """The previous system's and EmoBox's published numbers (serlib/data/reference_results.yaml)."""
    text = (importlib.resources.files("serlib") / "data" / "reference_results.yaml").read_text()
    return yaml.safe_load(text)


def copy_caveat(corpus: str, fingerprint: str) -> str:
    """The known defects of this exact corpus copy (matched by data fingerprint), or ''."""
    text = (importlib.resources.files("serlib") / "data" / "known_copies.yaml").read_text()
    return (yaml.safe_load(text).get(corpus) or {}).get(fingerprint, "")


def is_speaker_independent(corpus: str, protocol: str) -> bool:
    return SPEAKER_INDEPENDENT.get((corpus, protocol), True)


# ----------------------------------------------------------------------------- dataset overview


def unrecognised_table(prepared: Prepared) -> pd.DataFrame:
    """Files the corpus reader did not recognise: path relative to the corpus folder (no machine paths) and why."""
    u = prepared.scan.unrecognised
    root = Path(prepared.scan.root)

    def relative(path: str) -> str:
        try:
            return Path(path).relative_to(root).as_posix()
        except ValueError:
            return Path(path).name

    return pd.DataFrame({"file": [relative(p) for p in u["path"]], "reason": list(u["reason"])})


def class_counts(prepared: Prepared) -> pd.DataFrame:
    """Usable clips per class, with the share in percent."""
    ok = prepared.features.usable
    counts = ok["label"].value_counts().rename("clips").to_frame()
    counts["share_%"] = (100 * counts["clips"] / counts["clips"].sum()).round(1)
    return counts


def speaker_table(prepared: Prepared) -> pd.DataFrame:
    """Clips per speaker and class, with gender."""
    ok = prepared.features.usable
    table = pd.crosstab([ok["speaker"], ok["gender"].fillna("?")], ok["label"])
    table["total"] = table.sum(axis=1)
    return table


def durations(prepared: Prepared) -> pd.DataFrame:
    """Per clip: seconds before and after preprocessing (VAD trimming), and whether VAD found speech."""
    return prepared.features.preprocess_info


def plot_durations(prepared: Prepared) -> plt.Figure:
    info = durations(prepared)
    fig, ax = plt.subplots(figsize=(8, 3.2))
    bins = np.linspace(0, max(info["input_seconds"].max(), 0.5), 40)
    ax.hist(info["input_seconds"], bins=bins, alpha=0.6, label="file")
    ax.hist(info["output_seconds"], bins=bins, alpha=0.6, label="after VAD trim")
    ax.set_xlabel("seconds")
    ax.set_ylabel("clips")
    ax.legend()
    ax.set_title("clip durations")
    fig.tight_layout()
    return fig


def plot_examples(prepared: Prepared, config: Config, seed: int = 0) -> plt.Figure:
    """One random clip per class: waveform after preprocessing and its log-mel spectrogram."""
    import librosa.display

    from .audio import load_audio
    from .preprocess import preprocess_wave

    ok = prepared.features.usable
    labels = sorted(ok["label"].unique())
    fig, axes = plt.subplots(len(labels), 2, figsize=(10, 1.6 * len(labels)), squeeze=False)
    sr = config.preprocess.sample_rate
    pre = Config().preprocess
    pre.vad, pre.sample_rate = config.preprocess.vad, sr  # examples are shown without denoising
    for row, label in enumerate(labels):
        pick = ok[ok["label"] == label].sample(1, random_state=seed).iloc[0]
        wave, _ = preprocess_wave(load_audio(pick["path"], sr), pre)
        t = np.arange(len(wave)) / sr
        axes[row, 0].plot(t, wave, linewidth=0.5)
        axes[row, 0].set_ylabel(label, rotation=0, ha="right")
        axes[row, 0].set_xlim(0, t[-1] if len(t) else 1)
        mel = librosa.power_to_db(librosa.feature.melspectrogram(y=wave, sr=sr, n_mels=64, hop_length=160), ref=np.max)
        librosa.display.specshow(mel, sr=sr, hop_length=160, x_axis="time", y_axis="mel", ax=axes[row, 1])
        axes[row, 1].set_title(pick["utt_id"], fontsize=8)
        axes[row, 1].set_xlabel("")
    axes[0, 0].set_title("waveform (preprocessed)")
    fig.tight_layout()
    return fig


def fold_table(prepared: Prepared, config: Config) -> pd.DataFrame:
    """Per fold of the protocol: sizes, test and validation speakers, and how validation was carved."""
    rows = []
    usable = prepared.features.usable
    for fold in range(fold_count(prepared.features, config)):
        a = split_for(prepared.features, config, fold)
        spk = {p: sorted(usable.loc[a == p, "speaker"].astype(str).unique()) for p in ("train", "val", "test")}
        rows.append({"fold": fold + 1, "train": int((a == "train").sum()), "val": int((a == "val").sum()),
                     "test": int((a == "test").sum()), "unused": int((a == "unused").sum()),
                     "test speakers": ", ".join(spk["test"]) if len(spk["test"]) <= 12 else f"{len(spk['test'])} speakers",
                     "val speakers": ", ".join(spk["val"]) if len(spk["val"]) <= 12 else f"{len(spk['val'])} speakers",
                     "note": a.attrs.get("note", "")})
    return pd.DataFrame(rows).set_index("fold")


# ----------------------------------------------------------------------------- one protocol


def protocol_runs(results: str | Path, corpus: str, protocol: str, model: str | None = None) -> pd.DataFrame:
    runs = list_runs(results)
    if runs.empty:
        return runs
    keep = (runs["corpus"] == corpus) & (runs["protocol"] == protocol)
    if model:
        keep &= runs["model"] == model
    return runs[keep].sort_values(["model", "seed", "fold"]).reset_index(drop=True)


def mean_history(paths: Sequence[str | Path]) -> pd.DataFrame:
    """Per epoch: mean and std over runs of losses, validation UAR and learning rate."""
    frames = [pd.read_csv(Path(p) / "history.csv").assign(run=i) for i, p in enumerate(paths)
              if (Path(p) / "history.csv").is_file()]
    if not frames:
        return pd.DataFrame()
    h = pd.concat(frames)
    agg = h.groupby("epoch")[["train_loss", "val_loss", "val_uar", "val_accuracy", "lr"]].agg(["mean", "std"])
    agg.columns = [f"{a}_{b}" for a, b in agg.columns]
    agg["runs"] = h.groupby("epoch")["run"].nunique()
    return agg.reset_index()


def plot_mean_history(hist: pd.DataFrame, title: str = "") -> plt.Figure:
    """Training curves averaged over folds x seeds (shaded: ± 1 std)."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for key, label, ax in (("train_loss", "train loss", axes[0]), ("val_loss", "validation loss", axes[0]),
                           ("val_uar", "validation UAR", axes[1]), ("lr", "learning rate", axes[2])):
        scale = 100 if key == "val_uar" else 1
        m, s = hist[f"{key}_mean"] * scale, hist[f"{key}_std"].fillna(0) * scale
        ax.plot(hist["epoch"], m, label=label)
        ax.fill_between(hist["epoch"], m - s, m + s, alpha=0.2)
    axes[0].set_title("loss")
    axes[0].legend()
    axes[1].set_title("validation UAR (%)")
    axes[2].set_title("learning rate")
    axes[2].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("epoch")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def training_progress(runs: pd.DataFrame) -> pd.DataFrame:
    """Per Tier-1 run: epochs run, best epoch, best validation UAR, checkpoint, test UAR."""
    rows = []
    for r in runs.itertuples():
        m = read_json(Path(r.path) / "metrics.json")
        h = pd.read_csv(Path(r.path) / "history.csv") if (Path(r.path) / "history.csv").is_file() else None
        rows.append({"fold": r.fold, "seed": r.seed, "epochs run": m.get("epochs_run"), "best epoch": m.get("best_epoch"),
                     "improvements": int(h["improved"].sum()) if h is not None else None,
                     "best val UAR %": round(100 * m["best_val_uar"], 2), "test UAR %": round(100 * m["test"]["uar"], 2),
                     "test acc %": round(100 * m["test"]["accuracy"], 2),
                     "final lr": f"{h['lr'].iloc[-1]:.2e}" if h is not None else "",
                     "checkpoint": m.get("checkpoint", "")})
    return pd.DataFrame(rows)


def fold_summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std of test UAR / accuracy per model over folds x seeds, in percent."""
    rows = []
    for model, g in runs.groupby("model"):
        u, us = mean_std(g["test_uar"])
        a, as_ = mean_std(g["test_accuracy"])
        v, _ = mean_std(g["best_val_uar"].astype(float))
        rows.append({"model": model, "folds": g["fold"].nunique(), "seeds": g["seed"].nunique(),
                     "test UAR %": f"{100 * u:.2f} ± {100 * us:.2f}", "test accuracy %": f"{100 * a:.2f} ± {100 * as_:.2f}",
                     "best val UAR %": f"{100 * v:.2f}", "minutes": round(float(g["wall_seconds"].fillna(0).sum()) / 60, 1)})
    return pd.DataFrame(rows).set_index("model")


def pooled(runs: pd.DataFrame, labels: Sequence[str] | None = None) -> dict[str, Any]:
    """Metrics over every test prediction of the given runs (all folds and seeds pooled)."""
    return pooled_report(runs["path"], labels)


def analysis_text(report: dict[str, Any], runs: pd.DataFrame, baseline: pd.DataFrame | None = None) -> str:
    """A few sentences of analysis generated from the pooled report and per-run spread."""
    table = per_class_table(report).sort_values("recall")
    worst, best = table.index[0], table.index[-1]
    pairs = most_confused_pairs(report, k=3)
    u, us = mean_std(runs["test_uar"])
    lines = [
        f"Over {len(runs)} run(s) ({runs['fold'].nunique()} fold(s) × {runs['seed'].nunique()} seed(s)) the Tier-1 test UAR is "
        f"{100 * u:.1f} ± {100 * us:.1f} % (pooled predictions: {100 * report['uar']:.1f} %, 95 % bootstrap CI "
        f"{100 * report['uar_ci95'][0]:.1f}–{100 * report['uar_ci95'][1]:.1f} %; chance is {100 / len(report['labels']):.1f} %).",
        f"The best-recognised class is **{best}** (recall {table.loc[best, 'recall']:.1f} %), the worst **{worst}** "
        f"(recall {table.loc[worst, 'recall']:.1f} %).",
    ]
    if len(pairs):
        conf = "; ".join(f"{p.true} → {p.predicted} ({p._4:.0f} % of {p.true})" for p in pairs.itertuples())
        lines.append(f"The largest confusions are {conf}.")
    by_fold = runs.groupby("fold")["test_uar"].mean()
    if len(by_fold) > 1:
        text = (f"Fold means range from {100 * by_fold.min():.1f} % (fold {by_fold.idxmin()}) to "
                f"{100 * by_fold.max():.1f} % (fold {by_fold.idxmax()}): the choice of test fold matters")
        by_seed = runs.groupby("seed")["test_uar"].mean()
        if len(by_seed) > 1:
            text += (f"; the spread of seed means ({100 * by_seed.min():.1f}–{100 * by_seed.max():.1f} %) is "
                     + ("smaller" if by_seed.std() < by_fold.std() else "not smaller") + " than that of fold means")
        lines.append(text + ".")
    val_gap = float((runs["best_val_uar"] - runs["test_uar"]).mean())
    lines.append(f"Best validation UAR exceeds test UAR by {100 * val_gap:.1f} points on average: the best epoch is chosen on "
                 "the validation part, so validation numbers are optimistic and only test numbers are reported as results.")
    if baseline is not None and len(baseline):
        b, bs = mean_std(baseline["test_uar"])
        verdict = "above" if u > b else "below"
        lines.append(f"The MFCC-statistics SVM baseline on the same folds reaches {100 * b:.1f} ± {100 * bs:.1f} %: Tier-1 is "
                     f"{abs(100 * (u - b)):.1f} points {verdict} it.")
    return "\n\n".join(lines)


# ----------------------------------------------------------------------------- summary


def _pct(v: Any) -> str:
    return "–" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.2f}"


def summary_table(results: str | Path, data_root: str | Path | None = None) -> pd.DataFrame:
    """The report's summary, in the previous report's shape: one row per corpus x protocol run here.

    Columns: protocol (marked when not speaker-independent), classes, train/val/test
    sizes (per fold), folds x seeds, best validation UAR, test UAR and accuracy
    (mean ± std over folds x seeds) and the SVM baseline's test UAR on the same
    folds. Corpora without runs get a 'not run' row with the command to run them.
    """
    runs = list_runs(results)
    summ = summarize_runs(runs) if len(runs) else pd.DataFrame(columns=["corpus", "protocol", "model"])
    rows = []
    for corpus in CORPORA:
        tier1 = summ[(summ["corpus"] == corpus) & (summ["model"] == "tier1")]
        if tier1.empty:
            present = bool(data_root) and (Path(data_root) / corpus).is_dir()
            why = "not run yet: data present" if present else "not run: data not available here"
            rows.append({"corpus": DISPLAY_NAMES[corpus], "protocol": f"{why} (to run: make run CORPUS={corpus})"})
            continue
        for r in tier1.itertuples():
            base = summ[(summ["corpus"] == corpus) & (summ["protocol"] == r.protocol) & (summ["model"] == "baseline-svm")]
            first = runs[(runs["corpus"] == corpus) & (runs["protocol"] == r.protocol)].iloc[0]["path"]
            rows.append({
                "corpus": DISPLAY_NAMES[corpus],
                "protocol": r.protocol + ("" if is_speaker_independent(corpus, r.protocol) else " (not speaker-independent)"),
                "classes": str(len(read_json(Path(first) / "metrics.json")["labels"])),
                "train / val / test": f"{r.n_train} / {r.n_val} / {r.n_test}",
                "folds × seeds": f"{r.folds} × {r.seeds}",
                "best val UAR %": _pct(100 * r.best_val_uar),
                "test UAR %": f"{100 * r.test_uar:.2f} ± {100 * r.test_uar_std:.2f}",
                "test acc %": f"{100 * r.test_accuracy:.2f} ± {100 * r.test_accuracy_std:.2f}",
                "baseline test UAR %": f"{100 * base.iloc[0].test_uar:.2f} ± {100 * base.iloc[0].test_uar_std:.2f}" if len(base) else "–",
            })
    columns = ["corpus", "protocol", "classes", "train / val / test", "folds × seeds", "best val UAR %", "test UAR %",
               "test acc %", "baseline test UAR %"]
    return pd.DataFrame(rows, columns=columns).fillna("").set_index("corpus")


def key_findings(results: str | Path) -> str:
    """Bullet points generated from the runs: per protocol, Tier-1 against the baseline, and the extremes."""
    runs = list_runs(results)
    if runs.empty:
        return "No runs yet."
    summ = summarize_runs(runs)
    tier1 = summ[summ["model"] == "tier1"]
    lines = []
    for r in tier1.itertuples():
        base = summ[(summ["corpus"] == r.corpus) & (summ["protocol"] == r.protocol) & (summ["model"] == "baseline-svm")]
        name = f"{DISPLAY_NAMES[r.corpus]} ({r.protocol}, {r.folds} folds × {r.seeds} seeds)"
        if len(base):
            diff = 100 * (r.test_uar - base.iloc[0].test_uar)
            spread = 100 * max(r.test_uar_std, base.iloc[0].test_uar_std)
            verdict = ("within the spread of folds and seeds" if abs(diff) < spread else
                       "more than the spread of folds and seeds")
            lines.append(f"- **{name}**: Tier-1 {100 * r.test_uar:.1f} % vs baseline {100 * base.iloc[0].test_uar:.1f} % "
                         f"({diff:+.1f} points, {verdict}; std up to {spread:.1f}).")
    best = tier1.loc[tier1["test_uar"].idxmax()]
    worst = tier1.loc[tier1["test_uar"].idxmin()]
    lines.append(f"- Highest Tier-1 test UAR: {DISPLAY_NAMES[best.corpus]} ({best.protocol}); lowest: "
                 f"{DISPLAY_NAMES[worst.corpus]} ({worst.protocol}). See each corpus page for the classes that fail and why.")
    lines.append(f"- {len(runs)} runs in all, {runs['wall_seconds'].fillna(0).sum() / 3600:.1f} h of wall-clock time on a "
                 "2-core CPU, every one tested on held-out data once.")
    return "\n".join(lines)


def comparison_table(results: str | Path) -> pd.DataFrame:
    """Our primary-protocol test UAR beside the previous system's and EmoBox's best numbers."""
    runs = list_runs(results)
    summ = summarize_runs(runs) if len(runs) else pd.DataFrame(columns=["corpus", "protocol", "model"])
    ref = reference_results()
    prev, emobox = ref["previous_system"]["corpora"], ref["emobox_best"]["corpora"]
    rows = []
    for corpus in CORPORA:
        ours = summ[(summ["corpus"] == corpus) & (summ["model"] == "tier1") & (summ["protocol"] == PRIMARY_PROTOCOL[corpus])]
        p = prev.get(corpus) or {}
        rows.append({
            "corpus": DISPLAY_NAMES[corpus],
            "serlib Tier-1 test UAR %": (f"{100 * ours.iloc[0].test_uar:.2f} ({PRIMARY_PROTOCOL[corpus]})" if len(ours) else "not run"),
            "previous: best val UAR %": _pct(p.get("best_val_uar")),
            "previous: test UAR %": _pct(p.get("test_uar")),
            "previous: split": p.get("protocol", "–"),
            "EmoBox best UA %": f"{emobox[corpus]['ua']:.2f} ({emobox[corpus]['model']})" if corpus in emobox else "–",
        })
    return pd.DataFrame(rows).set_index("corpus")


def _pct(v: Any) -> str:
    return "–" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.2f}"


def previous_table() -> pd.DataFrame:
    """The previous system's summary table, as published (for side-by-side display)."""
    prev = reference_results()["previous_system"]["corpora"]
    table = pd.DataFrame([{"corpus": DISPLAY_NAMES[c], **v} for c, v in prev.items()]).set_index("corpus")

    def fmt(v: Any) -> Any:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return "–"
        return int(v) if isinstance(v, float) and v.is_integer() else v

    return table.astype(object).map(fmt)


def provenance_table(results: str | Path) -> pd.DataFrame:
    """One row per run: commit, data fingerprint, seed, wall time, threads, denoiser, feature cache."""
    rows = []
    for r in list_runs(results).itertuples():
        path = Path(r.path) / "provenance.json"
        prov = read_json(path) if path.is_file() else {}
        rows.append({"run": str(Path(r.path).relative_to(Path(results))), "git commit": str(prov.get("git_commit", ""))[:12],
                     "data fingerprint": prov.get("data_fingerprint"), "seed": prov.get("seed"),
                     "wall s": prov.get("wall_seconds"), "threads": prov.get("torch_threads"),
                     "device": prov.get("device", "cpu"), "denoise": prov.get("denoise"), "created": prov.get("created")})
    return pd.DataFrame(rows)


def benchmark_table(results: str | Path) -> pd.DataFrame:
    """The numbers of every saved benchmark (``results/benchmarks/*.json``), one row per measure.

    Columns: benchmark, part, measure, value, git commit, torch threads, created.
    """
    rows = []
    for path in sorted((Path(results) / "benchmarks").glob("*.json")):
        saved = read_json(path)
        prov = saved.get("provenance", {})
        numbers = saved.get("results", {})
        parts = numbers.items() if all(isinstance(v, dict) for v in numbers.values()) else [("", numbers)]
        for part, values in parts:
            for measure, value in values.items():
                rows.append({"benchmark": saved.get("benchmark", path.stem), "part": part, "measure": measure,
                             "value": value, "git commit": str(prov.get("git_commit", ""))[:12],
                             "torch threads": prov.get("torch_threads"), "created": prov.get("created")})
    return pd.DataFrame(rows, columns=["benchmark", "part", "measure", "value", "git commit", "torch threads", "created"])


def compute_by_corpus(results: str | Path) -> pd.DataFrame:
    """Total wall-clock minutes of all runs per corpus and model."""
    runs = list_runs(results)
    if runs.empty:
        return runs
    out = runs.groupby(["corpus", "model"])["wall_seconds"].agg(["count", "sum"]).rename(columns={"count": "runs"})
    out["minutes"] = (out.pop("sum") / 60).round(1)
    return out
