"""Tables, figures and generated text for the report notebooks.

The notebooks stay thin: they call these functions and display what comes back.
Everything here reads run folders and prepared corpora; nothing trains. Written
analysis is generated from the numbers of the runs (which classes fail, what
they are confused with, how far folds spread), never typed in beforehand.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any, Iterator, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import yaml

from serlib.config import Config
from serlib.core.runs import PROJECT_ROOT, list_runs, read_json
from serlib.data.corpora import DISPLAY_NAMES
from serlib.evaluation.folds import mean_of_folds
from serlib.evaluation.metrics import mean_std, most_confused_pairs, per_class_table
from serlib.features.prepared import Prepared, fold_count, split_for
from serlib.report.comparisons import (
    MIN_TEST_SPEAKERS,
    REPORT_SYSTEMS,
    ProtocolResults,
    confusion_sources,
    fmt_ci,
    folds_figure,
    is_post_hoc,
    is_seeded,
    is_transductive,
    paired_difference,
    per_speaker_uar,
    pooled_report,
    primary_results,
    protocol_results,
    system_label,
)

# the notebooks read these comparisons through this module (``report.system_table(...)``)
from serlib.report.comparisons import paired_table as paired_table  # noqa: E402
from serlib.report.comparisons import system_kind as system_kind  # noqa: E402
from serlib.report.comparisons import system_table as system_table  # noqa: E402
from serlib.report.comparisons import transductive_comparisons as transductive_comparisons  # noqa: E402
from serlib.report.comparisons import transductive_results as transductive_results  # noqa: E402

PRIMARY_PROTOCOL = {"ravdess": "emobox", "cremad": "speaker-cv", "savee": "emobox", "iemocap": "emobox",
                    "tess": "speaker-cv", "emodb": "speaker-cv", "urdu": "speaker-cv"}
"""The primary protocol of each corpus: the ``data.protocol`` of ``configs/<corpus>.yaml`` (a test keeps them equal)."""
SPEAKER_INDEPENDENT = {("emodb", "emobox"): False, ("cremad", "emobox"): False, ("tess", "emobox"): False,
                       ("urdu", "emobox"): False}


def setup_display() -> None:
    """pandas options of every page: no table is ever cut short with "...", and numbers print as they are."""
    pd.set_option("display.max_rows", None)
    pd.set_option("display.max_columns", None)
    pd.set_option("display.max_colwidth", None)
    pd.set_option("display.width", 200)


def reference_results() -> dict[str, Any]:
    """The previous system's and EmoBox's published numbers (serlib/data/reference_results.yaml)."""
    text = (importlib.resources.files("serlib") / "data" / "reference_results.yaml").read_text()
    return yaml.safe_load(text)


def copy_caveat(corpus: str, fingerprint: str) -> str:
    """The known defects of this exact corpus copy (matched by data fingerprint), or ''."""
    text = (importlib.resources.files("serlib") / "data" / "known_copies.yaml").read_text()
    return (yaml.safe_load(text).get(corpus) or {}).get(fingerprint, "")


def is_speaker_independent(corpus: str, protocol: str) -> bool:
    """Whether no speaker of a test fold appears in its training or validation part under ``protocol``."""
    from serlib.data.splits import NOT_SPEAKER_INDEPENDENT

    return protocol not in NOT_SPEAKER_INDEPENDENT and SPEAKER_INDEPENDENT.get((corpus, protocol), True)


def speaker_independence_banner(corpus: str, protocol: str) -> str:
    """Markdown stating whether the protocol is speaker independent (prominent when it is not)."""
    if is_speaker_independent(corpus, protocol):
        return (f"Protocol `{protocol}` is **speaker independent**: the test speakers of every fold are in neither its "
                "training nor its validation part.")
    if corpus not in PRIMARY_PROTOCOL:  # a corpus of one's own whose manifest names no speakers
        return (f"**⚠ Not speaker independent.** The manifest of {DISPLAY_NAMES[corpus]} names no speakers, so its "
                f"`{protocol}` folds split clips, not speakers: a speaker may be heard in training and test, and these "
                "numbers measure recognition of known voices as much as of emotions. Add a speaker column for "
                "speaker-independent folds.")
    return (f"**⚠ Not speaker independent.** Under protocol `{protocol}` the test speakers of {DISPLAY_NAMES[corpus]} "
            "also speak in the training part, so these numbers measure recognition of known voices and are "
            "optimistic; they are shown because the benchmark uses this protocol. Compare systems here with each "
            f"other, not with speaker-independent results (the primary protocol is `{PRIMARY_PROTOCOL[corpus]}`).")


def display_path(path: str | Path | None, root: str | Path | None = None) -> str:
    """A path as a page may show it: relative to ``root`` (default: the project) or just its last two parts.

    Pages never print machine paths: a folder inside the project becomes
    ``results/...``, anything else keeps only its final components.
    """
    if path is None or str(path) == "":
        return ""
    p = Path(path)
    base = Path(root) if root is not None else PROJECT_ROOT
    try:
        return p.resolve().relative_to(base.resolve()).as_posix() or "."
    except (ValueError, OSError):
        return Path(*p.parts[-2:]).as_posix() if p.is_absolute() else p.as_posix()


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


def quarantine_table(prepared: Prepared) -> pd.DataFrame:
    """The quarantined files with their reason; details name files relative to the corpus folder (no machine paths)."""
    q = prepared.features.quarantine.copy()
    if "detail" in q:
        root = str(Path(prepared.scan.root).resolve()) + "/"
        q["detail"] = q["detail"].astype(str).str.replace(root, "", regex=False)
    return q.drop(columns=["path"], errors="ignore")


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

    from serlib.data.audio import load_audio
    from serlib.features.preprocess import preprocess_wave

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


def pooled(runs: pd.DataFrame, labels: Sequence[str] | None = None) -> dict[str, Any]:
    """Metrics over every test prediction of the given runs (all folds and seeds pooled)."""
    return pooled_report(runs["path"], labels)


def protocol_caveats(pr: ProtocolResults) -> list[str]:
    """The known defects of the corpus copies the runs were made from (by their recorded data fingerprints)."""
    return [c for c in (copy_caveat(pr.corpus, f) for f in pr.fingerprints) if c]


def protocol_header(pr: ProtocolResults) -> str:
    """Markdown opening a protocol page: speaker independence, the runs found, the data fingerprints."""
    found = [f"{system_label(m, pr.corpus)}: {s.status}" + (f" ({len(s.runs)} run{'s' if len(s.runs) > 1 else ''})" if len(s.runs) else "")
             for m, s in pr.systems.items()]
    lines = [f"## {DISPLAY_NAMES[pr.corpus]} — protocol `{pr.protocol}`", speaker_independence_banner(pr.corpus, pr.protocol),
             f"Folds found in the run folders: {', '.join(map(str, pr.folds)) or 'none'}. Systems: " + "; ".join(found) + "."]
    if len(pr.fingerprints) > 1:
        lines.append(f"**The runs were made from {len(pr.fingerprints)} different copies of the corpus** "
                     f"(data fingerprints {', '.join(pr.fingerprints)}): systems are not compared on the same data.")
    elif pr.fingerprints:
        lines.append(f"Data fingerprint of the corpus copy: `{pr.fingerprints[0]}`.")
    others = [m for m in pr.others if not is_transductive(m)]  # those have their own section below
    if others:
        lines.append("Other systems with runs under this protocol (not shown on this page): "
                     f"{', '.join(system_label(m, pr.corpus) for m in others)}.")
    networks = [m for m, s in pr.systems.items() if is_seeded(m) and 0 < len(s.seeds) < 3]
    if networks:
        lines.append("Fewer than 3 seeds: " + "; ".join(
            f"{system_label(m, pr.corpus)} seeds {', '.join(map(str, pr.systems[m].seeds))}" for m in networks) + ".")
    lines += [f"**Known defects of this copy.** {c}" for c in protocol_caveats(pr)]
    return "\n\n".join(lines)


def class_report(pr: ProtocolResults, model: str) -> dict[str, Any] | None:
    """Per-class metrics over all test predictions of ``model`` (every fold and seed pooled), or None."""
    s = pr.systems.get(model)
    if s is None:
        return None
    labels = sorted({c for m in pr.ran for c in pr.systems[m].predictions["true"]}) or None
    return s.report(labels)


def speaker_systems(pr: ProtocolResults) -> list[str]:
    """The systems a per-speaker table and plot show (so they fit the page): Tier-1, Tier-1+, the best classical
    baseline and the best system of any kind (both chosen on validation speakers), those with complete runs, each
    once."""
    wanted = ["tier1", "tier1plus", pr.best(("classical",)), pr.best(None)]
    return [m for m in dict.fromkeys(wanted) if m and m in pr.ran]


def worst_speakers(table: pd.DataFrame, k: int = 5) -> pd.DataFrame:
    """The ``k`` test speakers with the lowest UAR of the first system, and the ``k`` highest (if more exist)."""
    if len(table) <= 2 * k:
        return table
    return pd.concat([table.head(k), table.tail(k)])


def protocol_verdict(pr: ProtocolResults) -> str:
    """The page's answer first, in two or three sentences: the best system and the best classical baseline (both
    chosen on validation speakers) with their pooled UAR [95 % CI], their paired difference, and Tier-1's place."""
    if not pr.ran:
        return "**Verdict.** No system has a complete set of runs under this protocol yet."
    few = pr.test_speakers < MIN_TEST_SPEAKERS

    def number(model: str) -> str:
        b = pr.systems[model].bootstrap
        return f"{fmt_ci(b.uar, b.ci_low, b.ci_high, few=few)} %"

    def figure(model: str) -> str:
        return f"{system_label(model, pr.corpus)}, {number(model)}"

    best, baseline = pr.best(None), pr.best(("classical",))
    text = [f"**Verdict.** On {pr.test_speakers} test speakers, the best system (chosen on validation speakers) is "
            f"{figure(best)} pooled UAR."]
    tie = pr.validation_tie(None)
    if tie:
        text.append(f"Validation cannot tell it from {len(tie)} other system(s) (all at "
                    f"{100 * pr.systems[best].validation_uar:.1f} % validation UAR), so it stands first only by the "
                    "order of the catalogue; read the figure for the spread of test scores.")
    if baseline and baseline != best:
        d = paired_difference(pr, best, baseline)
        gap = (f"; the paired difference is {d.cell()} points, "
               + ("an interval above zero" if d.ci_low > 0 else "an interval below zero" if d.ci_high < 0
                  else "an interval that includes zero") if d else "")
        text.append(f"The best classical baseline is {figure(baseline)}{gap}.")
    if "tier1" in pr.ran and best != "tier1":
        text.append(f"Tier-1, the reproduced earlier system, scores {number('tier1')}.")
    return " ".join(text)


def plot_protocol(pr: ProtocolResults) -> plt.Figure:
    """Every system's pooled test UAR with its 95 % speaker interval, best first; the chosen best system and baseline
    in colour, chance dotted."""
    ran = sorted(pr.ran, key=lambda m: pr.systems[m].pooled_uar)
    fig, ax = plt.subplots(figsize=(8, 0.42 * max(len(ran), 1) + 1.4))
    best, baseline = pr.best(None), pr.best(("classical",))
    for y, model in enumerate(ran):
        b = pr.systems[model].bootstrap
        colour = "#2ca02c" if model == best else "#ff7f0e" if model == baseline else "#9e9e9e"
        ax.barh(y, 100 * b.uar, color=colour, alpha=0.5 if is_post_hoc(model, pr.corpus) else 0.9)
        ax.errorbar(100 * b.uar, y, xerr=[[100 * (b.uar - b.ci_low)], [100 * (b.ci_high - b.uar)]], fmt="none",
                    ecolor="black", capsize=3, lw=1)
    if ran:
        chance = 100 / len(set(pr.systems[ran[0]].predictions["true"]))
        ax.axvline(chance, ls=":", color="black", lw=1)
        ax.text(chance, -0.7, " chance", fontsize=8, va="bottom")
    ax.set_yticks(range(len(ran)), [system_label(m, pr.corpus) for m in ran], fontsize=8)
    ax.set_xlim(0, 100)
    ax.set_xlabel(f"pooled test UAR % (95 % interval over {pr.test_speakers} test speakers)")
    ax.set_title(f"{DISPLAY_NAMES.get(pr.corpus, pr.corpus)}, {pr.protocol}: green best system, orange best classical "
                 "baseline\n(both chosen on validation speakers); pale: post hoc", fontsize=9)
    fig.tight_layout()
    return fig


def protocol_analysis(pr: ProtocolResults, paired: pd.DataFrame | None = None) -> str:
    """A few sentences generated from the numbers of a protocol page (nothing typed in beforehand)."""
    if not pr.ran:
        return "No system has a complete set of runs under this protocol yet, so nothing is analysed."
    lines = []
    best = pr.best(None)
    name = system_label(best, pr.corpus)
    b = pr.systems[best].bootstrap
    chance = 100 / len(set(pr.systems[best].predictions["true"]))
    lines.append(f"The best system, chosen on validation speakers, is **{name}**: {100 * b.uar:.1f} % (95 % CI "
                 f"{100 * b.ci_low:.1f}–{100 * b.ci_high:.1f} %, resampling {b.n_speakers} test speakers; chance is "
                 f"{chance:.1f} %).")
    if paired is not None:
        for what, row in paired.iterrows():
            if row["difference (points)"] != "—":
                p_value = row["one-sided p (A > B)"]
                lines.append(f"{what[:1].upper() + what[1:]}: {row['A']} − {row['B']} = {row['difference (points)']} points, "
                             f"95 % CI {row['95 % CI (points)']}" + (f", one-sided p = {p_value}" if p_value != "—"
                                                                       else "") + f" ({row['reading']}).")
    for model in confusion_sources(pr):
        rep = class_report(pr, model)
        table = per_class_table(rep).sort_values("recall")
        pairs = most_confused_pairs(rep, k=2)
        text = (f"{system_label(model, pr.corpus)} recognises **{table.index[-1]}** best (recall {table['recall'].iloc[-1]:.1f} %) "
                f"and **{table.index[0]}** worst ({table['recall'].iloc[0]:.1f} %)")
        if len(pairs):
            text += "; its largest confusions are " + "; ".join(
                f"{p.true} → {p.predicted} ({p._4:.0f} % of {p.true})" for p in pairs.itertuples())
        lines.append(text + ".")
    s = pr.systems[best]
    m, sd, n = mean_of_folds(s.used)
    if n > 1:
        by_fold = s.used.groupby("fold")["test_uar"].mean()
        lines.append(f"{name}'s mean of folds is {100 * m:.1f} ± {100 * sd:.1f} %; fold means range from "
                     f"{100 * by_fold.min():.1f} % (fold {by_fold.idxmin()}) to {100 * by_fold.max():.1f} % "
                     f"(fold {by_fold.idxmax()}), so the test fold matters.")
    speakers = per_speaker_uar(pr, [best])
    if len(speakers) > 1:
        col = system_label(best, pr.corpus)
        low = speakers.head(min(3, len(speakers)))
        if speakers[col].min() < speakers[col].max():  # every speaker alike: no speaker to single out
            lines.append(f"The speakers {name} fails most on are " + ", ".join(
                f"{spk} ({u:.0f} %)" for spk, u in zip(low.index, low[col])) + ".")
    tier1 = pr.systems.get("tier1")
    if tier1 is not None and len(tier1.used) and "best_val_uar" in tier1.used:
        gap = float((tier1.used["best_val_uar"].astype(float) - tier1.used["test_uar"]).mean())
        relation = f"exceeds its test UAR by {100 * gap:.1f}" if gap >= 0 else f"is {100 * -gap:.1f} below its test UAR"
        lines.append(f"Tier-1's best validation UAR {relation} points on average: the best "
                     "epoch is chosen on validation speakers, so only test numbers are reported as results.")
    return "\n\n".join(lines)


def analysis_text(report: dict[str, Any], runs: pd.DataFrame, baseline: pd.DataFrame | None = None) -> str:
    """A few sentences of analysis generated from a pooled report and per-run spread (one system)."""
    table = per_class_table(report).sort_values("recall")
    worst, best = table.index[0], table.index[-1]
    pairs = most_confused_pairs(report, k=3)
    u, us = mean_std(runs["test_uar"])
    lines = [
        f"Over {len(runs)} run(s) ({runs['fold'].nunique()} fold(s) × {runs['seed'].nunique()} seed(s)) the test UAR is "
        f"{100 * u:.1f} ± {100 * us:.1f} % over runs (all test predictions pooled: {100 * report['uar']:.1f} %; chance is "
        f"{100 / len(report['labels']):.1f} %).",
        f"The best-recognised class is **{best}** (recall {table.loc[best, 'recall']:.1f} %), the worst **{worst}** "
        f"(recall {table.loc[worst, 'recall']:.1f} %).",
    ]
    if len(pairs):
        conf = "; ".join(f"{p.true} → {p.predicted} ({p._4:.0f} % of {p.true})" for p in pairs.itertuples())
        lines.append(f"The largest confusions are {conf}.")
    if baseline is not None and len(baseline):
        b, bs = mean_std(baseline["test_uar"])
        verdict = "above" if u > b else "below"
        lines.append(f"The baseline on the same folds reaches {100 * b:.1f} ± {100 * bs:.1f} %: this is "
                     f"{abs(100 * (u - b)):.1f} points {verdict} it.")
    return "\n\n".join(lines)


# ----------------------------------------------------------------------------- studies


def ablation_table(results: str | Path, corpus: str, protocol: str, ablations: Sequence[str], *,
                   not_run: dict[str, str] | None = None, n_resamples: int = 2000) -> pd.DataFrame:
    """One row per ablation (``tier1-<name>`` run folders) against the base Tier-1 runs of the same protocol.

    Columns: status, runs (folds × seeds), pooled test UAR % [95 % speaker CI],
    mean ± std of folds, the paired pooled-UAR difference to the base on matched
    seeds with its 95 % CI, and minutes. ``not_run`` maps ablations that could
    not run here to the reason (shown without the exception's class name).
    """
    names = {"base": "tier1", **{a: f"tier1-{a}" for a in ablations}}
    pr = protocol_results(results, corpus, protocol, list(names.values()), n_resamples=n_resamples)
    rows = []
    for name, model in names.items():
        s = pr.systems[model]
        row = {"ablation": name, "status": s.status}
        if name in (not_run or {}) and s.runs.empty:
            row["status"] = f"not run: {reader_reason(not_run[name])}"
        elif s.runs.empty:
            row["status"] = f"not run yet (make ablations CORPUS={corpus})"
        if len(s.runs):
            m, sd, n = mean_of_folds(s.used if len(s.used) else s.runs)
            row.update({"folds × seeds": f"{n} × {len(s.seeds)}", "mean ± std of folds %": folds_figure(m, sd, n),
                        "minutes": round(float(s.runs["wall_seconds"].fillna(0).sum()) / 60, 1)})
        if s.bootstrap is not None:
            b = s.bootstrap
            row["pooled test UAR % [95 % CI]"] = f"{100 * b.uar:.1f} [{100 * b.ci_low:.1f}, {100 * b.ci_high:.1f}]"
        if name != "base":
            d = paired_difference(pr, model, "tier1")
            if d is not None:
                row["Δ vs base, points [95 % CI]"] = d.cell()
        rows.append(row)
    columns = ["ablation", "status", "folds × seeds", "pooled test UAR % [95 % CI]", "mean ± std of folds %",
               "Δ vs base, points [95 % CI]", "minutes"]
    table = pd.DataFrame(rows, columns=columns).set_index("ablation").astype(object)
    return table.where(table.notna(), "—")


def reader_reason(reason: str) -> str:
    """A missing dependency's reason for a reader: its first clause, without the exception class name that leads it
    or the places that were searched (what to do about it is for the command line, not the page)."""
    import re

    text = re.sub(r"^\w+(Error|Unavailable|Exception):\s*", "", " ".join(str(reason).split()))
    text = re.split(r"\s\(|\.\s|;\s", text, maxsplit=1)[0].rstrip(".")
    return text


def cross_corpus_matrix(results: str | Path, corpora: Sequence[str], seeds: Sequence[int] = (0,),
                        protocol: str | None = None) -> tuple[list[str], pd.DataFrame]:
    """Read a cross-corpus matrix from the run folders :mod:`serlib.experiments.crosscorpus` wrote (never trains).

    For each training corpus A the runs are ``<A>/<protocol>/tier1-x-<classes>/fold-1/seed-<s>/``
    (``protocol``: A's primary protocol unless given), or A's own ``tier1/`` runs where the
    group's classes are all of A's (:func:`serlib.experiments.crosscorpus.run_name`), with ``cross-<B>.json``
    beside them. The class set of the group is the largest one that every corpus of the group
    has runs for, with scores on every other corpus of the group. Cells: test UAR (fraction),
    mean over the seeds found (their number per training corpus in ``matrix.attrs["seeds"]``);
    NaN where nothing was found. Returns (classes, matrix).
    """
    found = {a: _cross_runs(Path(results) / a / (protocol or PRIMARY_PROTOCOL[a]), [b for b in corpora if b != a],
                            seeds) for a in corpora}
    common = set.intersection(*(set(runs) for runs in found.values())) if found else set()
    matrix = pd.DataFrame(index=list(corpora), columns=list(corpora), dtype=float)
    if not common:
        return [], matrix
    tag = max(common, key=lambda t: (t.count("-"), t))
    classes: list[str] = []
    for a in corpora:
        scores: dict[str, list[float]] = {b: [] for b in corpora}
        for run in found[a][tag]:
            metrics = read_json(run / "metrics.json")
            classes = classes or list(metrics.get("labels", []))
            scores[a].append(metrics["test"]["uar"])
            for b in corpora:
                if b != a:
                    scores[b].append(read_json(run / f"cross-{b}.json")["test"]["uar"])
        for b, values in scores.items():
            matrix.loc[a, b] = float(np.mean(values)) if values else np.nan
    matrix.attrs["seeds"] = {a: len(found[a][tag]) for a in corpora}
    return classes, matrix


def _cross_runs(protocol_dir: Path, others: Sequence[str], seeds: Sequence[int]) -> dict[str, list[Path]]:
    """A training corpus's finished cross-corpus runs, by class tag: one per seed, each scored on every corpus of ``others``."""
    from serlib.core.runs import class_tag

    by_tag: dict[str, dict[int, Path]] = {}
    for folder in [protocol_dir / "tier1", *sorted(protocol_dir.glob("tier1-x-*"))]:
        for s in seeds:
            run = folder / "fold-1" / f"seed-{s}"
            if not (run / "metrics.json").is_file() or not all((run / f"cross-{b}.json").is_file() for b in others):
                continue
            tag = folder.name if folder.name != "tier1" else class_tag(read_json(run / "metrics.json")["labels"])
            by_tag.setdefault(tag, {}).setdefault(s, run)
    return {tag: [runs[s] for s in sorted(runs)] for tag, runs in by_tag.items()}


# ----------------------------------------------------------------------------- summary


def summary_results(results: str | Path, models: Sequence[str] = REPORT_SYSTEMS, *,
                    n_resamples: int = 2000) -> dict[str, ProtocolResults]:
    """Every corpus's primary protocol with runs, read once for the summary page's tables."""
    return primary_results(results, PRIMARY_PROTOCOL, models, n_resamples=n_resamples)


def not_run_reason(corpus: str, data_root: str | Path | None) -> str:
    """Why a corpus has no runs here (data present or not), with the command that runs it."""
    present = bool(data_root) and _corpus_present(corpus, data_root)
    why = "not run yet: data present" if present else "not run: data not available here"
    return f"{why} (to run: make run CORPUS={corpus})"


def _corpus_present(corpus: str, data_root: str | Path) -> bool:
    from serlib.data.corpora import corpus_root

    try:
        return any(corpus_root(corpus, data_root).iterdir())
    except (FileNotFoundError, ValueError, OSError):
        return False


def other_protocols_table(results: str | Path, models: Sequence[str] = REPORT_SYSTEMS) -> pd.DataFrame:
    """Protocols with runs that are not a corpus's primary one (EmoBox folds beside speaker-level CV, ...).

    Columns: corpus, protocol (marked when not speaker independent), systems with
    runs, Tier-1's test UAR (mean ± std of folds).
    """
    from serlib.data.corpora import CORPORA

    runs = list_runs(results)
    rows = []
    if len(runs):
        order = {c: i for i, c in enumerate(CORPORA)}  # the corpus order of every page
        groups = sorted(runs.groupby(["corpus", "protocol"]), key=lambda kv: (order.get(kv[0][0], 99), kv[0][1]))
        for (corpus, protocol), g in groups:
            if PRIMARY_PROTOCOL.get(corpus) == protocol or not set(g["model"]) & set(models):
                continue
            t = g[g["model"] == "tier1"]
            m, sd, n = mean_of_folds(t)
            figure = folds_figure(m, sd, n) + (f" ({n} folds)" if n > 1 else "")
            rows.append({"corpus": DISPLAY_NAMES.get(corpus, corpus),
                         "protocol": protocol + ("" if is_speaker_independent(corpus, protocol) else " (not speaker-independent)"),
                         "systems with runs": ", ".join(system_label(m) for m in models if m in set(g["model"])),
                         "Tier-1 test UAR % (mean ± std of folds)": figure})
    return pd.DataFrame(rows, columns=["corpus", "protocol", "systems with runs",
                                       "Tier-1 test UAR % (mean ± std of folds)"])


def comparability(entry: dict[str, Any]) -> str:
    """Whether the previous system's number can be set beside ours, from how it was measured."""
    protocol = str(entry.get("protocol", ""))
    if entry.get("test_uar") is None and entry.get("best_val_uar") is None:
        return "nothing to compare: the previous system never ran it"
    if "leaky" in protocol or entry.get("test_uar") is None:
        return (f"not comparable: a validation UAR on a {protocol} split (the same speakers in training and validation, "
                "no test set); ours are test UARs on unseen speakers")
    if "unspecified" in protocol:
        return ("only roughly: both are test UARs, but the previous split is unspecified (speaker overlap unknown, one "
                "test set); ours are speaker-independent folds")
    return "comparable protocol"


def previous_per_class() -> pd.DataFrame:
    """The previous system's published CREMA-D test per-class table (``serlib/data/previous_per_class.yaml``)."""
    text = (importlib.resources.files("serlib") / "data" / "previous_per_class.yaml").read_text()
    data = yaml.safe_load(text)
    frames = []
    for corpus, entry in data.items():
        if corpus == "source":
            continue
        frames.append(pd.DataFrame(entry["classes"]).assign(corpus=corpus))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def per_class_beside_previous(results: str | Path, corpus: str = "cremad", model: str = "tier1", *,
                              primary: dict[str, ProtocolResults] | None = None) -> pd.DataFrame:
    """Per class: the previous system's test recall and F1 beside ours (all folds and seeds pooled), in percent."""
    prev = previous_per_class()
    prev = prev[prev["corpus"] == corpus].set_index("label")[["recall", "f1"]].astype(float).round(1)
    prev.columns = ["previous recall %", "previous F1 %"]
    primary = primary if primary is not None else summary_results(results, (model,))
    pr = primary.get(corpus)
    rep = class_report(pr, model) if pr is not None and model in pr.ran else None
    if rep is None:
        prev[f"serlib {system_label(model)} recall %"] = "not run"
        prev[f"serlib {system_label(model)} F1 %"] = "not run"
        return prev
    ours = per_class_table(rep)[["recall", "f1"]]
    ours.columns = [f"serlib {system_label(model)} recall %", f"serlib {system_label(model)} F1 %"]
    return prev.join(ours, how="outer").round(1)


def provenance_table(results: str | Path) -> pd.DataFrame:
    """One row per run: system, commit, data fingerprint, seed, wall time, device, threads, host, encoder weights.

    ``encoder sha256`` is the first 12 hex digits of the frozen encoder's weights
    (encoder systems only); ``run`` is the folder relative to the results folder.
    """
    rows = []
    for r in list_runs(results).itertuples():
        path = Path(r.path) / "provenance.json"
        prov = read_json(path) if path.is_file() else {}
        encoder = prov.get("encoder") if isinstance(prov.get("encoder"), dict) else {}
        commit = str(prov.get("git_commit", ""))
        rows.append({"run": Path(r.path).relative_to(Path(results)).as_posix(), "system": r.model,
                     "git commit": commit[:12], "dirty": commit.endswith("+dirty"),
                     "data fingerprint": prov.get("data_fingerprint"), "seed": prov.get("seed"),
                     "wall s": prov.get("wall_seconds"), "device": prov.get("device", "cpu"),
                     "threads": prov.get("torch_threads"), "host": prov.get("host"),
                     "runner": "dask worker" if str(prov.get("worker", "")).startswith("tcp://") else "one process",
                     "denoise": prov.get("denoise") or "— (no denoising step in this system)",
                     "encoder sha256": str(encoder.get("sha256", ""))[:12],
                     "created": prov.get("created")})
    return pd.DataFrame(rows, columns=["run", "system", "git commit", "dirty", "data fingerprint", "seed", "wall s", "device",
                                       "threads", "host", "runner", "denoise", "encoder sha256", "created"])


def _leaves(prefix: str, value: Any) -> Iterator[tuple[str, Any]]:
    """(dotted name, value) for every leaf of nested dicts and lists (lists of records are numbered from 1)."""
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _leaves(f"{prefix} · {key}" if prefix else str(key), inner)
    elif isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        for k, inner in enumerate(value, 1):
            yield from _leaves(f"{prefix} {k}", inner)
    else:
        yield prefix, value


def _plain(value: Any) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(_plain(v) for v in value)
    return str(value)


def benchmark_table(results: str | Path) -> pd.DataFrame:
    """The numbers of every saved benchmark (``results/benchmarks/*.json``), one row per measure, as text.

    Columns: benchmark, measure (nested names joined with ·), value, git commit,
    torch threads, date.
    """
    rows = []
    for path in sorted((Path(results) / "benchmarks").glob("*.json")):
        saved = read_json(path)
        prov = saved.get("provenance", {})
        for measure, value in _leaves("", saved.get("results", {})):
            top = measure.split(" · ")[0]
            if top == "met" or any(word in top for word in ("target", "required", "meets")):
                continue  # the thresholds a benchmark was written against, not measurements
            measure = " · ".join([{"before": "earlier commit", "this_commit": "measured commit"}.get(top, top)]
                                 + measure.split(" · ")[1:])
            rows.append({"benchmark": saved.get("benchmark", path.stem), "measure": measure, "value": _plain(value),
                         "git commit": str(prov.get("git_commit", ""))[:12],
                         "torch threads": _plain(prov.get("torch_threads")),
                         "date": _plain(prov.get("created"))[:10]})
    return pd.DataFrame(rows, columns=["benchmark", "measure", "value", "git commit", "torch threads", "date"])


def provenance_overview(prov: pd.DataFrame) -> pd.DataFrame:
    """:func:`provenance_table` in one row per corpus, protocol and system: runs, commits, clean?, minutes, devices."""
    if prov.empty:
        return pd.DataFrame(columns=["corpus", "protocol", "system", "runs", "commits", "all commits clean?",
                                     "wall minutes", "devices"])
    parts = prov["run"].str.split("/", expand=True)
    frame = prov.assign(corpus=parts[0].map(lambda c: DISPLAY_NAMES.get(c, c)), protocol=parts[1])
    rows = []
    for (corpus, protocol, system), g in frame.groupby(["corpus", "protocol", "system"], sort=False):
        rows.append({"corpus": corpus, "protocol": protocol, "system": system, "runs": len(g),
                     "commits": g["git commit"].nunique(),
                     "all commits clean?": "no" if g["dirty"].any() else "yes",
                     "wall minutes": f"{g['wall s'].fillna(0).sum() / 60:.1f}",
                     "devices": ", ".join(sorted(set(g["device"].astype(str))))})
    return pd.DataFrame(rows)


def compute_by_corpus(results: str | Path) -> pd.DataFrame:
    """Total wall-clock minutes of all runs per corpus and model."""
    runs = list_runs(results)
    if runs.empty:
        return runs
    out = runs.groupby(["corpus", "model"])["wall_seconds"].agg(["count", "sum"]).rename(columns={"count": "runs"})
    out["minutes"] = (out.pop("sum") / 60).round(1)
    return out
