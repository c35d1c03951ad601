"""Regenerate the notebook templates in notebooks/ (thin: every cell calls serlib).

Run: .venv/bin/python tools/make_notebooks.py — then commit the .ipynb files.
Edit the cells here, not in the .ipynb files, so the templates stay consistent.
"""
import hashlib
from pathlib import Path

import nbformat as nbf
OUT = Path(__file__).resolve().parents[1] / "notebooks"

def nb(cells):
    n = nbf.v4.new_notebook()
    n.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                  "language_info": {"name": "python"}}
    out = []
    for kind, src, *tags in cells:
        c = nbf.v4.new_markdown_cell(src) if kind == "md" else nbf.v4.new_code_cell(src)
        if tags:
            c.metadata["tags"] = tags[0] + ["remove-cell"]  # the book shows papermill's injected values instead
        elif kind == "code":
            c.metadata["tags"] = ["hide-input"]
        # stable ids (from the cell's position and source) so regenerating gives clean diffs
        c.id = hashlib.sha1(f"{len(out)}:{src}".encode()).hexdigest()[:8]
        out.append(c)
    n.cells = out
    return n

SETUP = """import os, warnings
from pathlib import Path
import pandas as pd
from IPython.display import Markdown, display
warnings.filterwarnings("ignore", category=UserWarning)
warnings.filterwarnings("ignore", message="IProgress not found")
pd.set_option("display.max_columns", 40); pd.set_option("display.width", 200); pd.set_option("display.max_colwidth", None)
from serlib.runs import PROJECT_ROOT, default_results_dir
results = Path(results_dir) if results_dir else default_results_dir()  # $SERLIB_RESULTS or results/
"""

overview = nb([
    ("code", """# Parameters (papermill injects its own values below this cell)
corpus = "ravdess"        # ravdess | cremad | savee | iemocap | tess | emodb | urdu
data_root = None          # folder holding one folder per corpus (default: $SERLIB_DATA)
protocol = None           # default: the one in configs/<corpus>.yaml
config_path = None        # default: configs/<corpus>.yaml
cache_dir = None          # default: $SERLIB_CACHE or ~/.cache/serlib
results_dir = None        # unused here; kept so every notebook takes the same parameters
smoke = False             # tiny run for CI (no effect on the overview)""", ["parameters"]),
    ("md", "# Dataset overview\n\nWhat the corpus copy holds after scanning and validation: classes, speakers and genders, durations before and after VAD trimming, one example per class, the files that were quarantined and the folds of the protocol."),
    ("code", SETUP + """from serlib.config import load_config
from serlib.corpora import DISPLAY_NAMES
from serlib.experiment import prepare
from serlib import report
config = load_config(config_path or PROJECT_ROOT / "configs" / f"{corpus}.yaml",
                     overrides=[f"data.protocol={protocol}"] if protocol else [])
prepared = prepare(config, data_root=data_root, cache_dir=cache_dir, progress=False)
summary = prepared.features.summary()
display(Markdown(f"## {DISPLAY_NAMES[corpus]}\\n\\n**{summary['usable']}** usable clips of {summary['files']} files, "
                 f"**{summary['speakers']}** speakers, **{len(summary['classes'])}** classes, {summary['hours']:.2f} h of audio; "
                 f"**{summary['quarantined']}** quarantined; VAD found no speech in {summary['vad_no_speech']} clip(s) (kept whole). "
                 f"Data fingerprint `{summary['fingerprint']}`."))
caveat = report.copy_caveat(corpus, summary["fingerprint"])
if caveat:
    display(Markdown(f"**Known defects of this copy.** {caveat}"))"""),
    ("md", "## Classes"),
    ("code", "report.class_counts(prepared)"),
    ("md", "## Speakers and gender"),
    ("code", """speakers = report.speaker_table(prepared)
display(speakers.groupby(level="gender").size().rename("speakers").to_frame())
speakers"""),
    ("md", "## Durations"),
    ("code", """info = report.durations(prepared)
display(info[["input_seconds", "output_seconds"]].describe().round(3).T)
report.plot_durations(prepared);"""),
    ("md", "## One example per class"),
    ("code", "report.plot_examples(prepared, config);"),
    ("md", "## Quarantine and unrecognised files\n\nFiles that could not be used never stop a run: they are listed here with the reason."),
    ("code", """q = prepared.features.quarantine
display(Markdown(f"**{len(q)}** file(s) quarantined."))
display(q if len(q) else pd.DataFrame(columns=["utt_id", "reason", "detail"]))
u = prepared.scan.unrecognised
display(Markdown(f"**{len(u)}** file(s) not recognised by the reader."))
report.unrecognised_table(prepared)"""),
    ("md", "## Folds of the protocol\n\nTest speakers never appear in training or validation (except in protocols marked not speaker-independent); validation is carved from the training speakers."),
    ("code", """display(Markdown(f"Protocol **{config.data.protocol}**"))
report.fold_table(prepared, config)"""),
])

train = nb([
    ("code", """# Parameters (papermill injects its own values below this cell)
corpus = "ravdess"        # ravdess | cremad | savee | iemocap | tess | emodb | urdu
data_root = None          # folder holding one folder per corpus (default: $SERLIB_DATA)
protocol = None           # speaker-split | speaker-cv | emobox (default: configs/<corpus>.yaml)
folds = None              # list of 1-based folds, or None for every fold
seeds = [0, 1, 2]         # one run per fold and seed
epochs = None             # default: the config's (30)
config_path = None        # default: configs/<corpus>.yaml
overlays = []             # ablation YAMLs merged on top
model_name = "tier1"      # run-folder name of the Tier-1 model
results_dir = None        # default: <project>/results
cache_dir = None          # default: $SERLIB_CACHE or ~/.cache/serlib
smoke = False             # tiny run for CI: 2 epochs, first fold, first seed
retrain = False           # replace run folders made from another config or other data (never reused)
notes = ""                # analysis written after reading the numbers below (Markdown)""", ["parameters"]),
    ("md", "# Train and evaluate\n\nTier-1 and the MFCC-statistics SVM baseline on every fold and seed of the protocol. Finished runs are read back from their run folders; missing ones are trained here."),
    ("code", SETUP + """from serlib.config import SMOKE_OVERRIDES, load_config
from serlib.corpora import DISPLAY_NAMES
from serlib.experiment import prepare, run_protocol
from serlib import report, plots
from serlib.metrics import per_class_table, most_confused_pairs
overrides = [f"data.protocol={protocol}"] if protocol else []
if epochs:
    overrides.append(f"train.epochs={epochs}")
if smoke:
    overrides += list(SMOKE_OVERRIDES)
    folds, seeds = (folds or [1])[:1], list(seeds)[:1]
config = load_config(config_path or PROJECT_ROOT / "configs" / f"{corpus}.yaml", *overlays, overrides=overrides)
protocol = config.data.protocol
prepared = prepare(config, data_root=data_root, cache_dir=cache_dir, progress=False)
display(Markdown(f"## {DISPLAY_NAMES[corpus]} — protocol `{protocol}`"
                 + ("" if report.is_speaker_independent(corpus, protocol) else " (**not speaker-independent**)")
                 + f"\\n\\nSeeds {list(seeds)}, folds {folds or 'all'}; {config.train.epochs} epochs max, "
                 f"denoise `{config.preprocess.denoise}`, VAD {config.preprocess.vad}."))
caveat = report.copy_caveat(corpus, prepared.features.fingerprint)
if caveat:
    display(Markdown(f"**Known defects of this copy.** {caveat}"))"""),
    ("code", """table = run_protocol(config, prepared, folds=[f - 1 for f in folds] if folds else None, seeds=seeds,
                     results=results, tier1_name=model_name, retrain=retrain, progress=True)
table.drop(columns=["path"])"""),
    ("md", "## Test results over folds × seeds\n\nMean ± standard deviation over every (fold, seed) run; the best-validation-UAR checkpoint of each run is tested once."),
    ("code", """runs = report.protocol_runs(results, corpus, protocol)
runs = runs[runs["path"].isin(set(table["path"]))]
tier1 = runs[runs["model"] == model_name]
baseline = runs[runs["model"] == "baseline-svm"]
report.fold_summary(runs)"""),
    ("md", "## Per-class results (test predictions of all runs pooled)"),
    ("code", """pooled = report.pooled(tier1)
display(Markdown(f"Pooled over {len(tier1)} run(s): UAR **{100 * pooled['uar']:.2f} %** (95 % bootstrap CI "
                 f"{100 * pooled['uar_ci95'][0]:.1f}–{100 * pooled['uar_ci95'][1]:.1f}), accuracy {100 * pooled['accuracy']:.2f} %, "
                 f"macro F1 {100 * pooled['macro_f1']:.2f} %."))
per_class_table(pooled)"""),
    ("code", "plots.plot_confusion_matrix(pooled, title=f'{DISPLAY_NAMES[corpus]} {protocol}: Tier-1, all test predictions');"),
    ("code", "plots.plot_per_class(pooled);"),
    ("md", "## Most confused pairs"),
    ("code", "most_confused_pairs(pooled, k=6)"),
    ("md", "## Training progress\n\nPer run: epochs trained (early stopping on validation UAR), best epoch and the learning rate at the end (it never falls below the 5 % floor). Curves: mean ± std over runs."),
    ("code", """display(report.training_progress(tier1))
report.plot_mean_history(report.mean_history(tier1["path"]), title=f"{DISPLAY_NAMES[corpus]} {protocol} (mean over runs)");"""),
    ("md", "## Baseline: MFCC statistics + RBF SVM on the same folds"),
    ("code", """if len(baseline):
    bp = report.pooled(baseline, pooled["labels"])
    display(per_class_table(bp))
    plots.plot_confusion_matrix(bp, title="baseline (MFCC statistics + SVM)")"""),
    ("md", "## Analysis\n\nGenerated from the numbers above."),
    ("code", """display(Markdown(report.analysis_text(pooled, tier1, baseline)))
if notes:
    display(Markdown(notes))"""),
    ("md", "## Provenance"),
    ("code", "report.provenance_table(results).query('run.str.startswith(@corpus + \"/\" + @protocol + \"/\")', engine='python')"),
])

summary = nb([
    ("code", """# Parameters (papermill injects its own values below this cell)
results_dir = None        # default: <project>/results
data_root = None          # only used to say which corpora are present""", ["parameters"]),
    ("md", "# Summary\n\nEvery number below is read from run folders written by executed notebooks (see *Provenance*). Mean ± std over folds × seeds; UAR = unweighted average recall (balanced accuracy), the primary metric."),
    ("code", SETUP + """from serlib import report
table = report.summary_table(results, data_root)
table"""),
    ("md", "## Beside the previous system and EmoBox\n\nOur primary-protocol numbers next to the previous system's and EmoBox's best. The previous system's numbers are **not comparable**: RAVDESS and SAVEE used random 80/20 utterance splits (speakers leak between training and validation) and were never tested; its RAVDESS validation UAR is therefore an optimistic, speaker-dependent number. EmoBox's best numbers come from large pre-trained speech models (Whisper large v3, WavLM large) on the *complete* corpora; our RAVDESS and EmoDB copies are truncated (see *Data*)."),
    ("code", "report.comparison_table(results)"),
    ("md", "The previous system's own summary table, as published:"),
    ("code", "report.previous_table()"),
    ("md", "## Key findings\n\nGenerated from the runs above; the per-corpus pages add an analysis written after reading their numbers."),
    ("code", "display(Markdown(report.key_findings(results)))"),
    ("md", "## Compute"),
    ("code", "report.compute_by_corpus(results)"),
    ("md", "## Artifacts\n\nEvery run folder is `results/<corpus>/<protocol>/<model>/fold-<k>/seed-<s>/` with `config.yaml`, `provenance.json`, `history.csv`, `metrics.json`, `predictions.csv` and figures (committed); the checkpoints `best_uar_*.pt` and `last.pt` stay on the machine that trained them. The executed notebooks behind these pages are in `book/results/`."),
])

prov = nb([
    ("code", """# Parameters (papermill injects its own values below this cell)
results_dir = None        # default: <project>/results""", ["parameters"]),
    ("md", "# Provenance of every run\n\nOne row per run folder: the git commit of the code that ran, the fingerprint of the corpus copy (utterance ids, labels, speakers, file sizes), the seed, wall-clock seconds, torch threads and the denoising backend."),
    ("code", SETUP + """from serlib import report
prov = report.provenance_table(results)
display(Markdown(f"**{len(prov)}** runs, {prov['wall s'].sum() / 60:.1f} minutes of wall-clock time in total." if len(prov) else "No runs yet."))
prov"""),
    ("md", "## Compute per corpus\n\nWall-clock minutes of all finished runs, per corpus and model (ablations and cross-corpus models included). Most runs shared the two cores with one other run, one torch thread each."),
    ("code", "report.compute_by_corpus(results)"),
    ("md", "## Throughput benchmarks\n\nSaved by `make benchmark` (`benchmarks/*.py`) with the commit and thread count that measured them; timings are taken with no other job running on the two cores."),
    ("code", """bench = report.benchmark_table(results)
bench if len(bench) else Markdown("No benchmark saved yet: run `make benchmark`.")"""),
])

ablations = nb([
    ("code", """# Parameters (papermill injects its own values below this cell)
corpus = "ravdess"
data_root = None
protocol = None
folds = None              # 1-based folds, None for all
seeds = [0]
ablations = ["no-vad", "no-wave-aug", "no-batch-aug", "large", "no-class-weights", "demucs"]
pending = []              # ablations listed as not run yet (no compute time left in this batch)
notes = ""                # analysis written after reading the table (Markdown)
results_dir = None
cache_dir = None
smoke = False""", ["parameters"]),
    ("md", "# Tier-1 ablations\n\nEach row changes one thing against the base config (`configs/ablations/<name>.yaml`), on the same protocol, folds and splits, one seed. Cost is the wall-clock time of its runs. Read the differences against the fold-to-fold spread of the base row: with one seed and few folds, differences of a few points are not established."),
    ("code", SETUP + """from serlib.config import SMOKE_OVERRIDES, load_config
from serlib.experiment import prepare, run_protocol
from serlib.preprocess import DemucsUnavailable
from serlib import report
base_overrides = [f"data.protocol={protocol}"] if protocol else []
if smoke:
    base_overrides += list(SMOKE_OVERRIDES)
    folds, seeds = (folds or [1])[:1], list(seeds)[:1]
rows = []
for name in ["base"] + list(ablations):
    overlays = [] if name == "base" else [PROJECT_ROOT / "configs" / "ablations" / f"{name}.yaml"]
    config = load_config(PROJECT_ROOT / "configs" / f"{corpus}.yaml", *overlays, overrides=base_overrides)
    model = "tier1" if name == "base" else f"tier1-{name}"
    try:
        prepared = prepare(config, data_root=data_root, cache_dir=cache_dir, progress=False)
    except DemucsUnavailable as err:
        rows.append({"ablation": name, "status": f"not run: {str(err)[:160]}…"})
        continue
    t = run_protocol(config, prepared, folds=[f - 1 for f in folds] if folds else None, seeds=seeds,
                     results=results, models=("tier1",), tier1_name=model, progress=False)
    runs = report.protocol_runs(results, corpus, config.data.protocol, model)
    runs = runs[runs["path"].isin(set(t["path"]))]
    u, us = report.mean_std(runs["test_uar"])
    rows.append({"ablation": name, "status": "run", "runs": len(runs),
                 "test UAR %": f"{100 * u:.2f} ± {100 * us:.2f}", "Δ vs base (points)": None,
                 "minutes": round(runs["wall_seconds"].sum() / 60, 1), "_u": u})
for name in pending:
    rows.append({"ablation": name, "status": f"not run yet (make ablations CORPUS={corpus})"})
abl = pd.DataFrame(rows)
if "_u" in abl and abl["_u"].notna().any():
    base_u = abl.loc[abl["ablation"] == "base", "_u"].iloc[0]
    abl["Δ vs base (points)"] = ((abl["_u"] - base_u) * 100).round(2)
display(abl.drop(columns=["_u"], errors="ignore"))
if notes:
    display(Markdown(notes))"""),
])

cross = nb([
    ("code", """# Parameters (papermill injects its own values below this cell)
data_root = None
pairs = {"ravdess-emodb": ["ravdess", "emodb"], "ravdess-emodb-urdu": ["ravdess", "emodb", "urdu"]}
seeds = [0]
results_dir = None
cache_dir = None
smoke = False""", ["parameters"]),
    ("md", "# Cross-corpus tests\n\nFor each corpus of a group, Tier-1 is trained on the training speakers of that corpus's speaker-independent train/val/test split, restricted to the classes the group shares (validation from its own speakers). Its best checkpoint is tested on the held-out test speakers of the same corpus (the **diagonal**) and on every usable clip of each other corpus with a shared label (**off-diagonal**). Rows: training corpus; columns: test corpus; cells: test UAR in percent, averaged over the seeds given (one split per corpus)."),
    ("code", SETUP + """from serlib import crosscorpus
matrices = crosscorpus.run_matrices(pairs, data_root=data_root, results=results, cache_dir=cache_dir,
                                    seeds=seeds, smoke=smoke)
display(Markdown(f"Seeds: {list(seeds)}."))
for name, (classes, matrix) in matrices.items():
    display(Markdown(f"### {name}: classes {', '.join(classes)}"))
    display((matrix * 100).round(1))
    crosscorpus.plot(matrix, name)"""),
])

for name, n in {"dataset_overview": overview, "train_evaluate": train, "summary": summary, "provenance": prov,
                "ablations": ablations, "cross_corpus": cross}.items():
    nbf.write(n, OUT / f"{name}.ipynb")
print("ok")
