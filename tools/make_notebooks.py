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
from serlib.core.runs import PROJECT_ROOT, default_results_dir
def _path(value):  # parameters hold project-relative paths or $SERLIB_* variables, never machine paths
    return Path(os.path.expandvars(value)).expanduser() if value else None
results = _path(results_dir) or default_results_dir()  # $SERLIB_RESULTS or results/
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
from serlib.data.corpora import DISPLAY_NAMES
from serlib.features.prepared import prepare
from serlib.report import pages as report
config = load_config(config_path or PROJECT_ROOT / "configs" / f"{corpus}.yaml",
                     overrides=[f"data.protocol={protocol}"] if protocol else [])
prepared = prepare(config, data_root=_path(data_root), cache_dir=_path(cache_dir), progress=False)
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
display(report.quarantine_table(prepared) if len(q) else pd.DataFrame(columns=["utt_id", "reason", "detail"]))
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
protocol = None           # speaker-split | speaker-cv | emobox (default: the corpus's primary protocol)
models = ["tier1", "baseline-svm", "egemaps-svm", "compare-svm", "whisper-logreg"]  # systems shown, in this order
results_dir = None        # run folders (default: $SERLIB_RESULTS or results/)
notes = ""                # analysis written after reading the numbers below (Markdown)
smoke = False             # CI plumbing check: fewer bootstrap resamples, numbers mean nothing""", ["parameters"]),
    ("md", "# Protocol results\n\nEvery system on the same folds of one protocol, read from its run folders (this page never trains: `make run` trains first, then executes it). Two UARs are shown and always named: the **mean of folds** (per fold the mean over its seeds, then mean ± standard deviation over folds) and the **pooled** UAR (the test predictions of all folds of a seed in one UAR, averaged over seeds) with a 95 % confidence interval that **resamples test speakers**, not utterances."),
    ("code", SETUP + """from serlib.data.corpora import DISPLAY_NAMES
from serlib.report import pages as report
from serlib.evaluation import plots
from serlib.evaluation.metrics import per_class_table, most_confused_pairs
protocol = protocol or report.PRIMARY_PROTOCOL[corpus]
n_resamples = 200 if smoke else 2000
pr = report.protocol_results(results, corpus, protocol, models, n_resamples=n_resamples)
display(Markdown(report.protocol_header(pr)))
if smoke:
    display(Markdown("**Smoke run** on a generated mini corpus (tiny networks, 2 epochs, one fold): the numbers mean nothing."))"""),
    ("md", "## All systems\n\nOne row per system. *runs*: folds × seeds (deterministic systems run seed 0 only). *test UAR (mean ± std of folds)*: the spread over test folds. *pooled test UAR [95 % CI]*: pooled over folds and seeds; the CI resamples speakers. Accuracy and macro-F1 are pooled the same way. A system without run folders is listed as *not run*; one missing folds as *incomplete* (left out of the comparisons)."),
    ("code", "report.system_table(pr)"),
    ("md", "## Paired comparisons\n\nSpeaker-clustered paired bootstrap of the pooled-UAR difference A − B: each resample draws test speakers with replacement and scores **both** systems on the same speakers. The *best baseline* is the classical system with the highest mean validation UAR (transductive per-speaker z-score variants excluded: they use test speakers' statistics), and the *best encoder system* is chosen the same way: both sides are picked on validation speakers, never on test. p is one-sided for A > B."),
    ("code", """paired = report.paired_table(pr)
paired"""),
    ("md", "## Per class\n\nFor Tier-1 and for the best system (highest pooled test UAR, shown for description only): precision, recall and F1 per class, the confusion matrix and the most confused pairs, over all test predictions of every fold and seed."),
    ("code", """sources = report.confusion_sources(pr)
if not sources:
    display(Markdown("No system has a complete set of runs under this protocol yet."))
for model in sources:
    rep = report.class_report(pr, model)
    name = report.system_label(model)
    best = " (best system)" if model == pr.best_overall() else ""
    display(Markdown(f"### {name}{best}"))
    display(per_class_table(rep))
    plots.plot_confusion_matrix(rep, title=f"{DISPLAY_NAMES[corpus]} {protocol}: {name}, all test predictions")
    plots.plt.show()
    pairs = most_confused_pairs(rep, k=6)
    display(Markdown("Most confused pairs (share of the true class):" if len(pairs) else "No confusions."))
    if len(pairs):
        display(pairs)"""),
    ("md", "## Per speaker\n\nUAR over each test speaker's clips (mean over seeds), worst first for the first system listed: which speakers fail, and whether every system fails on them."),
    ("code", """speakers = report.per_speaker_uar(pr)
if len(speakers):
    display(Markdown(f"{len(speakers)} test speakers." + (" The 5 lowest and 5 highest of the first system:" if len(speakers) > 10 else "")))
    display(report.worst_speakers(speakers))
    chance = 1 / len(set(pr.systems[pr.ran[0]].predictions["true"]))
    plots.plot_per_speaker_uar(speakers, chance=chance, title=f"{DISPLAY_NAMES[corpus]} {protocol}: UAR per test speaker");
else:
    display(Markdown("No system has a complete set of runs under this protocol yet."))"""),
    ("md", "## Tier-1 training\n\nPer run: epochs trained (early stopping on validation UAR), best epoch and the learning rate at the end. Curves: mean ± std over runs."),
    ("code", """tier1 = pr.systems.get("tier1")
if tier1 is not None and len(tier1.runs):
    display(report.training_progress(tier1.runs).set_index(["fold", "seed"]))
    history = report.mean_history(tier1.runs["path"])
    if len(history):
        report.plot_mean_history(history, title=f"{DISPLAY_NAMES[corpus]} {protocol}: Tier-1 (mean over runs)");
else:
    display(Markdown("Tier-1: not run under this protocol."))"""),
    ("md", "## Analysis\n\nGenerated from the numbers above; a written analysis follows when one was made after reading them."),
    ("code", """display(Markdown(report.protocol_analysis(pr, paired)))
if notes:
    display(Markdown(notes))"""),
    ("md", "## Provenance"),
    ("code", """prov = report.provenance_table(results)
prov[prov["run"].str.startswith(f"{corpus}/{protocol}/") & prov["system"].isin(models)].set_index("run")"""),
])

summary = nb([
    ("code", """# Parameters (papermill injects its own values below this cell)
results_dir = None        # run folders (default: $SERLIB_RESULTS or results/)
data_root = None          # only used to say which corpora are present
smoke = False             # CI plumbing check: fewer bootstrap resamples""", ["parameters"]),
    ("md", "# Summary\n\nEvery number below is read from run folders (see *Provenance*). UAR = unweighted average recall (balanced accuracy), the primary metric. Each system's test UAR is given two ways: the **mean ± std of folds** (per fold the mean over its seeds), and the **pooled** UAR (all folds of a seed in one UAR, mean over seeds) with a 95 % CI that **resamples test speakers**. One row per corpus and its primary protocol."),
    ("code", SETUP + """from serlib.report import pages as report
from serlib.evaluation import stats
primary = report.summary_results(results, n_resamples=200 if smoke else 2000)
table = report.summary_table(results, _path(data_root), primary=primary)
table"""),
    ("md", "Other protocols with runs (each has its own page; those marked *not speaker-independent* share speakers between training and test):"),
    ("code", """other = report.other_protocols_table(results)
other if len(other) else Markdown("None.")"""),
    ("md", "## Beside the previous system and EmoBox\n\nOur primary-protocol numbers next to the previous system's and EmoBox's best, with whether they can be compared at all. The previous system's RAVDESS and SAVEE numbers are validation UARs of random 80/20 utterance splits (the same actors on both sides, no test set): they are **not comparable** with test UARs on unseen speakers. Its CREMA-D number is a test UAR on an unspecified split. EmoBox's best numbers come from large pre-trained speech models (Whisper large v3, WavLM large), on the same EmoBox folds only where our protocol is `emobox`."),
    ("code", "report.comparison_table(results, primary=primary)"),
    ("md", "CREMA-D per class: the previous system's published test recall and F1 beside Tier-1's (pooled over folds and seeds of the actor-independent folds):"),
    ("code", "report.per_class_beside_previous(results, primary=primary)"),
    ("md", "The previous system's own summary table, as published:"),
    ("code", "report.previous_table()"),
    ("md", "## Across corpora\n\nA Friedman test over corpora (one pooled UAR per system and corpus, primary protocols) with the Nemenyi critical difference (Demšar 2006): systems whose average ranks differ by less than the critical difference are joined by a bar, i.e. not shown to differ."),
    ("code", """across = report.friedman(results, primary=primary)
display(Markdown(across.note))
if across.result is not None:
    display(across.scores.round(2))
    display(across.result.average_ranks.rename("average rank (1 = best)").round(2).to_frame())
    stats.plot_critical_difference(across.result, title="Critical difference (Nemenyi, α = 0.05)");"""),
    ("md", "## Key findings\n\nGenerated from the runs above; the per-corpus pages add an analysis written after reading their numbers."),
    ("code", "display(Markdown(report.key_findings(results, primary=primary)))"),
    ("md", "## Compute"),
    ("code", "report.compute_by_corpus(results)"),
    ("md", "## Artifacts\n\nEvery run folder is `results/<corpus>/<protocol>/<model>/fold-<k>/seed-<s>/` with `config.yaml`, `request.json`, `provenance.json`, `metrics.json`, `predictions.csv` (per test clip: speaker, true and predicted label, scores), figures and, for networks, `history.csv` (committed); network checkpoints stay on the machine that trained them. The executed notebooks behind these pages are in `book/results/`."),
])

prov = nb([
    ("code", """# Parameters (papermill injects its own values below this cell)
results_dir = None        # run folders (default: $SERLIB_RESULTS or results/)""", ["parameters"]),
    ("md", "# Provenance of every run\n\nOne row per run folder: the system, the git commit of the code that ran, the fingerprint of the corpus copy (utterance ids, labels, speakers, file sizes), the seed, wall-clock seconds, the device, torch threads, the host, the denoising backend and, for frozen-encoder systems, the first digits of the encoder weights' sha256. Encoder heads' wall time excludes computing the cached embeddings."),
    ("code", SETUP + """from serlib.report import pages as report
prov = report.provenance_table(results)
display(Markdown(f"**{len(prov)}** runs, {prov['wall s'].fillna(0).sum() / 60:.1f} minutes of wall-clock time in total." if len(prov) else "No runs yet."))
prov.set_index("run")"""),
    ("md", "## Compute per corpus\n\nWall-clock minutes of all finished runs, per corpus and system (ablations and cross-corpus models included)."),
    ("code", "report.compute_by_corpus(results)"),
    ("md", "## Throughput benchmarks\n\nSaved by `make benchmark` (`benchmarks/*.py`) with the commit and thread count that measured them."),
    ("code", """bench = report.benchmark_table(results)
bench if len(bench) else Markdown("No benchmark saved yet: run `make benchmark`.")"""),
])

ablations = nb([
    ("code", """# Parameters (papermill injects its own values below this cell)
corpus = "ravdess"
protocol = None           # default: the corpus's primary protocol
ablations = ["no-vad", "no-wave-aug", "no-batch-aug", "large", "no-class-weights", "demucs"]
not_run = {}              # ablation -> why it could not run here (e.g. Demucs weights absent)
notes = ""                # analysis written after reading the table (Markdown)
results_dir = None        # run folders (default: $SERLIB_RESULTS or results/)
smoke = False""", ["parameters"]),
    ("md", "# Tier-1 ablations\n\nEach row changes one thing against the base config (`configs/ablations/<name>.yaml`), on the same protocol and folds; `make ablations` trains them, this page only reads their run folders. The difference to the base is paired: a speaker-clustered bootstrap of the pooled-UAR difference on the same test speakers. Cost is the wall-clock time of the runs."),
    ("code", SETUP + """from serlib.report import pages as report
protocol = protocol or report.PRIMARY_PROTOCOL[corpus]
display(Markdown(f"Protocol `{protocol}`. " + report.speaker_independence_banner(corpus, protocol)))
display(report.ablation_table(results, corpus, protocol, ablations, not_run=not_run, n_resamples=200 if smoke else 2000))
if notes:
    display(Markdown(notes))"""),
])

cross = nb([
    ("code", """# Parameters (papermill injects its own values below this cell)
pairs = {"ravdess-emodb": ["ravdess", "emodb"], "ravdess-emodb-urdu": ["ravdess", "emodb", "urdu"]}
seeds = [0]
results_dir = None        # run folders (default: $SERLIB_RESULTS or results/)""", ["parameters"]),
    ("md", "# Cross-corpus tests\n\nFor each corpus of a group, Tier-1 is trained on the training speakers of that corpus's speaker-independent train/val/test split, restricted to the classes the group shares (validation from its own speakers). Its best checkpoint is tested on the held-out test speakers of the same corpus (the **diagonal**) and on every usable clip of each other corpus with a shared label (**off-diagonal**). Rows: training corpus; columns: test corpus; cells: test UAR in percent, averaged over the seeds found. `make cross-corpus` trains and scores them; this page only reads the run folders."),
    ("code", SETUP + """from serlib.experiments import crosscorpus
from serlib.report import pages as report
display(Markdown(f"Seeds: {list(seeds)}."))
for name, corpora in pairs.items():
    classes, matrix = report.cross_corpus_matrix(results, corpora, seeds)
    if not classes:
        display(Markdown(f"### {name}: not run yet (make cross-corpus)"))
        continue
    display(Markdown(f"### {name}: classes {', '.join(classes)}"))
    display((matrix * 100).round(1))
    crosscorpus.plot(matrix, name)"""),
    ("md", "## The frozen Whisper-base encoder across corpora\n\nA logistic-regression head on one pooled encoder layer (layer and C chosen on the training corpus's validation speakers) is trained on fold 1 of each corpus's primary protocol, restricted to the group's shared classes, and tested on that fold's test speakers (diagonal) and on every clip of the other corpora (off-diagonal). The head is deterministic: one seed. Three feature standardisations: **none** (the head's own z-scoring with training statistics), **corpus** (each corpus z-scored with its own statistics) and **speaker** (each speaker with their own). The last two are **transductive**: they use the unlabelled clips of the test corpus or test speaker."),
    ("code", """import numpy as np
from serlib.experiments import encoder_crosscorpus as xc
summary_rows = []
for group, corpora in xc.ENCODER_GROUPS.items():
    for norm in xc.NORMALISATIONS:
        classes, matrix, rows = xc.read_matrix(group, corpora, norm, results)
        if not rows:
            display(Markdown(f"### {group}, {norm}: not run yet (make cross-corpus)"))
            continue
        display(Markdown(f"### {group}: classes {', '.join(classes)}; standardisation **{norm}**"
                         + (" (transductive)" if xc.TRANSDUCTIVE[norm] else "")))
        display((matrix * 100).round(1))
        summary_rows.append({"group": group, "standardisation": norm, "transductive": xc.TRANSDUCTIVE[norm],
                             "mean diagonal UAR %": round(100 * float(np.nanmean(np.diag(matrix.to_numpy(float)))), 1),
                             "mean off-diagonal UAR %": round(100 * xc.off_diagonal_mean(matrix), 1)})
if summary_rows:
    display(Markdown("### Standardisation, in short"))
    display(pd.DataFrame(summary_rows))"""),
])

for name, n in {"dataset_overview": overview, "train_evaluate": train, "summary": summary, "provenance": prov,
                "ablations": ablations, "cross_corpus": cross}.items():
    nbf.write(n, OUT / f"{name}.ipynb")
print("ok")
