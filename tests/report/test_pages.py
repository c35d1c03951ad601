"""The report's tables, specified on hand-made run folders: which systems are compared, what 'not run' looks like,
which UAR a column holds, and what a batch does with systems that cannot run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from serlib.experiments import batch
from serlib.report import comparisons, pages as report
from serlib.core.runs import PROJECT_ROOT

LABELS = ["angry", "happy", "neutral", "sad"]


def write_run(results: Path, corpus: str, protocol: str, model: str, fold: int, seed: int, speakers: list[str], *,
              accuracy: float, rng: np.random.Generator, clips: int = 8, encoder_sha: str | None = None,
              fingerprint: str = "f" * 16) -> Path:
    """A finished run folder whose predictions are right with probability ``accuracy``."""
    folder = results / corpus / protocol / model / f"fold-{fold}" / f"seed-{seed}"
    folder.mkdir(parents=True)
    rows = []
    for spk in speakers:
        for i in range(clips):
            true = LABELS[i % len(LABELS)]
            pred = true if rng.random() < accuracy else LABELS[(i + 1) % len(LABELS)]
            rows.append({"utt_id": f"{spk}_{i:02d}", "speaker": spk, "true": true, "predicted": pred})
    pred = pd.DataFrame(rows)
    pred.to_csv(folder / "predictions.csv", index=False)
    uar = float(pred.assign(ok=pred["true"] == pred["predicted"]).groupby("true")["ok"].mean().mean())
    metrics = {"labels": LABELS, "test": {"uar": uar, "accuracy": float((pred["true"] == pred["predicted"]).mean())},
               "best_val_uar": min(1.0, uar + 0.05), "sizes": {"train": 100, "val": 20, "test": len(pred)}}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    prov = {"seed": seed, "wall_seconds": 60.0, "data_fingerprint": fingerprint, "git_commit": "abc", "host": "vm"}
    if encoder_sha:
        prov["encoder"] = {"backend": "torch", "sha256": encoder_sha}
    (folder / "provenance.json").write_text(json.dumps(prov))
    return folder


FOLDS = {1: ["s1", "s2"], 2: ["s3", "s4"], 3: ["s5", "s6"]}


def write_protocol(results: Path, systems: dict[str, tuple[float, list[int]]], *, corpus: str = "emodb",
                   protocol: str = "speaker-cv", folds: dict[int, list[str]] = FOLDS, seed: int = 0) -> None:
    """Run folders of several systems: model -> (accuracy, seeds), every fold."""
    rng = np.random.default_rng(seed)
    for model, (accuracy, seeds) in systems.items():
        for fold, speakers in folds.items():
            for s in seeds:
                write_run(results, corpus, protocol, model, fold, s, speakers, accuracy=accuracy, rng=rng,
                          encoder_sha="ab" * 32 if model.startswith("whisper") else None)


def test_transductive_systems_are_compared_only_with_each_other_and_with_themselves_unnormalised(tmp_path):
    write_protocol(tmp_path, {"tier1plus": (0.7, [0]), "tier1-tplus-spkz": (0.8, [0]), "compare-svm": (0.6, [0]),
                              "compare-svm-spkz": (0.75, [0]), "egemaps-svm-spkz": (0.5, [0]), "tier1": (0.9, [0])})
    trans = comparisons.transductive_results(tmp_path, "emodb", "speaker-cv", n_resamples=200)
    assert list(trans.systems) == ["compare-svm-spkz", "compare-svm", "egemaps-svm-spkz", "egemaps-svm",
                                   "tier1-tplus-spkz", "tier1plus"]  # each beside its counterpart; no Tier-1
    assert trans.systems["egemaps-svm"].status == "not run"
    paired = comparisons.paired_table(trans, pairs=comparisons.transductive_comparisons(trans))
    first = paired.loc["Tier-1+ z-scored vs best z-scored baseline"]
    assert first["B"] == "ComParE + linear SVM (per-speaker z-score, transductive)"  # higher validation UAR
    assert first["A"] == "Tier-1+ (per-speaker z-score, transductive)"
    unnormalised = paired.loc["eGeMAPS + linear SVM (per-speaker z-score, transductive) vs without the z-score"]
    assert unnormalised["reading"] == "not compared: eGeMAPS + linear SVM not run"
    assert comparisons.transductive_results(tmp_path, "ravdess", "emobox") is None


def test_the_paired_table_compares_with_the_best_non_transductive_baseline(tmp_path):
    write_protocol(tmp_path, {"tier1": (0.9, [0, 1]), "baseline-svm": (0.4, [0]), "egemaps-svm": (0.7, [0]),
                              "egemaps-svm-spkz": (0.95, [0]), "whisper-logreg": (0.8, [0]), "tier1plus": (0.92, [0])})
    pr = comparisons.protocol_results(tmp_path, "emodb", "speaker-cv",
                                      [*comparisons.REPORT_SYSTEMS, "egemaps-svm-spkz"], n_resamples=200)
    assert pr.best(("classical",)) == "egemaps-svm"  # the transductive variant scores higher but is not a baseline
    assert pr.best(("classical",), transductive=True) == "egemaps-svm-spkz"
    paired = comparisons.paired_table(pr)
    assert list(paired["B"])[:4] == ["eGeMAPS + linear SVM"] * 2 + ["Tier-1", "eGeMAPS + linear SVM"]
    assert list(paired["A"])[:4] == ["Tier-1", "Tier-1+", "Tier-1+", "Whisper-base + logistic regression"]
    assert list(paired.loc["best encoder system vs Tier-1", ["A", "B"]]) == ["Whisper-base + logistic regression",
                                                                             "Tier-1"]
    fusion = paired.loc[["fusion vs best baseline", "fusion vs Whisper-base MLP"]]  # requested, never run
    assert list(fusion["B"]) == ["eGeMAPS + linear SVM", "Whisper-base + layer-weighted MLP"]
    assert all(r.startswith("not compared: Whisper-base MLP + Tier-1+ (late fusion) not run") for r in fusion["reading"])
    assert paired.loc["Tier-1+ vs Tier-1", "speakers"] == "6"  # paired on the same test speakers
    tier1 = paired.loc["Tier-1 vs best baseline"]
    low, high = (float(x) for x in tier1["95 % CI (points)"].strip("[]").split(","))
    assert low <= float(tier1["difference (points)"]) <= high
    assert 0 < float(tier1["one-sided p (A > B)"]) <= 1 and tier1["speakers"] == "6"


def test_systems_without_run_folders_are_listed_as_not_run(tmp_path):
    write_protocol(tmp_path, {"tier1": (0.8, [0]), "baseline-svm": (0.5, [0])})
    pr = comparisons.protocol_results(tmp_path, "emodb", "speaker-cv", n_resamples=100)
    table = comparisons.system_table(pr)
    assert list(table.index) == list(comparisons.REPORT_SYSTEMS)
    assert table.loc["whisper-logreg", "runs"] == "not run"
    assert table.loc["compare-svm", "pooled test UAR % [95 % CI]"] == "—"
    encoder = comparisons.paired_table(pr).loc["best encoder system vs best baseline"]
    assert encoder["reading"].startswith("not compared") and encoder["difference (points)"] == "—"


def test_a_system_missing_folds_is_incomplete_and_left_out_of_the_comparisons(tmp_path):
    write_protocol(tmp_path, {"tier1": (0.8, [0]), "baseline-svm": (0.5, [0])})
    write_protocol(tmp_path, {"egemaps-svm": (0.99, [0])}, folds={1: FOLDS[1]})
    pr = comparisons.protocol_results(tmp_path, "emodb", "speaker-cv", n_resamples=100)
    assert pr.systems["egemaps-svm"].status == "incomplete: 1 of 3 folds"
    assert pr.best(("classical",)) == "baseline-svm"
    assert "egemaps-svm" not in pr.ran


def test_a_seed_that_misses_a_fold_does_not_enter_the_pooled_numbers(tmp_path):
    write_protocol(tmp_path, {"tier1": (0.8, [0, 1])})
    write_protocol(tmp_path, {"tier1": (0.8, [2])}, folds={1: FOLDS[1]}, seed=1)
    pr = comparisons.protocol_results(tmp_path, "emodb", "speaker-cv", ["tier1"], n_resamples=100)
    assert pr.systems["tier1"].seeds == [0, 1] and len(pr.systems["tier1"].runs) == 7
    assert pr.systems["tier1"].bootstrap.n_replicates == 2


def test_the_replaced_systems_per_class_numbers_stand_beside_tier1s(tmp_path):
    per_class = report.per_class_beside_previous(tmp_path)
    assert per_class.loc["fear", "previous recall %"] == pytest.approx(35.9)
    assert per_class.loc["angry", "previous F1 %"] == pytest.approx(69.8)
    assert (per_class["serlib Tier-1 recall %"] == "not run").all()


def test_the_friedman_test_waits_for_three_corpora_with_every_compared_system(tmp_path):
    systems = {"tier1": (0.8, [0]), "baseline-svm": (0.5, [0]), "egemaps-svm": (0.6, [0])}
    for k, corpus in enumerate(("emodb", "urdu")):
        write_protocol(tmp_path, systems, corpus=corpus, seed=k)
    two = comparisons.friedman_over_corpora(report.summary_results(tmp_path, list(systems), n_resamples=50), list(systems))
    assert two.result is None and "2 corpora qualify" in two.note
    write_protocol(tmp_path, systems, corpus="tess", seed=5)
    write_protocol(tmp_path, {"whisper-logreg": (0.9, [0])}, corpus="tess", seed=6)  # on one corpus only: dropped
    models = [*systems, "whisper-logreg"]
    three = comparisons.friedman_over_corpora(report.summary_results(tmp_path, models, n_resamples=50), models)
    assert three.result is not None and three.result.n_datasets == 3 and three.result.n_systems == 3
    assert "Whisper-base" in three.note and list(three.scores.columns)[0] == "Tier-1"


def test_the_provenance_table_names_the_system_and_the_encoder_weights(tmp_path):
    write_protocol(tmp_path, {"tier1": (0.6, [0]), "whisper-logreg": (0.9, [0])})
    prov = report.provenance_table(tmp_path).set_index("run")
    assert prov.loc["emodb/speaker-cv/whisper-logreg/fold-1/seed-0", "encoder sha256"] == "ab" * 6
    assert prov.loc["emodb/speaker-cv/tier1/fold-1/seed-0", "encoder sha256"] == ""
    assert set(prov["system"]) == {"tier1", "whisper-logreg"} and not prov.index.str.startswith("/").any()


def test_the_ablation_table_pairs_each_ablation_with_the_base_runs(tmp_path):
    write_protocol(tmp_path, {"tier1": (0.6, [0]), "tier1-no-vad": (0.9, [0])})
    table = report.ablation_table(tmp_path, "emodb", "speaker-cv", ["no-vad", "demucs", "large"],
                                  not_run={"demucs": "DemucsUnavailable: no weights"}, n_resamples=100)
    assert table.loc["no-vad", "Δ vs base, points [95 % CI]"].startswith("+")
    assert table.loc["demucs", "status"] == "not run: no weights"  # the reason, without the exception's name
    assert table.loc["large", "status"].startswith("not run yet")


def test_the_cross_corpus_matrix_is_read_from_run_folders_with_the_groups_class_set(tmp_path):
    rng = np.random.default_rng(0)
    for corpus, other, protocol in (("ravdess", "emodb", "emobox"), ("emodb", "ravdess", "speaker-cv")):
        for tag, extra in (("tier1-x-neu-hap-sad-ang-fea-dis", []), ("tier1-x-neu-hap-sad-ang", ["urdu"])):
            run = write_run(tmp_path, corpus, protocol, tag, 1, 0, ["a"], accuracy=0.5, rng=rng)  # primary protocols
            for b in [other, *extra]:
                (run / f"cross-{b}.json").write_text(json.dumps({"test": {"uar": 0.25 if extra else 0.4}}))
    classes, matrix = report.cross_corpus_matrix(tmp_path, ["ravdess", "emodb"])
    assert matrix.loc["ravdess", "emodb"] == pytest.approx(0.4)  # the 6-class runs, not the 4-class group's
    assert report.cross_corpus_matrix(tmp_path, ["ravdess", "emodb", "urdu"])[1].isna().all().all()
    assert report.cross_corpus_matrix(tmp_path, ["ravdess", "emodb"], protocol="speaker-split")[1].isna().all().all()


def test_a_corpus_whose_classes_are_all_shared_is_read_from_its_own_tier1_runs(tmp_path):
    from serlib.core.runs import class_tag

    rng = np.random.default_rng(0)
    own = write_run(tmp_path, "urdu", "speaker-cv", "tier1", 1, 0, ["a"], accuracy=1.0, rng=rng)
    (own / "cross-emodb.json").write_text(json.dumps({"test": {"uar": 0.3}}))
    other = write_run(tmp_path, "emodb", "speaker-cv", class_tag(LABELS), 1, 0, ["a"], accuracy=0.0, rng=rng)
    (other / "cross-urdu.json").write_text(json.dumps({"test": {"uar": 0.2}}))
    classes, matrix = report.cross_corpus_matrix(tmp_path, ["urdu", "emodb"])
    assert classes == LABELS
    assert matrix.loc["urdu", "urdu"] == pytest.approx(1.0) and matrix.loc["urdu", "emodb"] == pytest.approx(0.3)
    assert matrix.loc["emodb", "urdu"] == pytest.approx(0.2)
    assert matrix.attrs["seeds"] == {"urdu": 1, "emodb": 1}


def test_primary_protocols_are_those_of_the_corpus_configs():
    from serlib.config import load_config

    for corpus, protocol in report.PRIMARY_PROTOCOL.items():
        assert load_config(PROJECT_ROOT / "configs" / f"{corpus}.yaml").data.protocol == protocol, corpus


def test_a_protocol_that_is_not_speaker_independent_says_so_prominently():
    assert "Not speaker independent" in report.speaker_independence_banner("emodb", "emobox")
    assert "`speaker-cv`" in report.speaker_independence_banner("emodb", "emobox")  # names the primary protocol
    assert "**speaker independent**" in report.speaker_independence_banner("emodb", "speaker-cv")


# ----------------------------------------------------------------------------- the batch


def test_networks_get_every_seed_and_deterministic_systems_seed_zero_only():
    assert batch.seeds_for("tier1", [0, 1, 2]) == [0, 1, 2]
    for model in ("baseline-svm", "egemaps-svm", "compare-logreg-spkz", "whisper-logreg"):
        assert batch.seeds_for(model, [0, 1, 2]) == [0], model


def test_page_parameters_never_show_machine_paths(tmp_path):
    shown, env = batch.page_parameters({"results_dir": str(PROJECT_ROOT / "results"), "data_root": str(tmp_path),
                                        "cache_dir": None, "corpus": "emodb"})
    assert shown == {"results_dir": "results", "data_root": "$SERLIB_DATA", "cache_dir": None, "corpus": "emodb"}
    assert env == {"SERLIB_DATA": str(tmp_path.resolve())}


def test_on_dask_the_fusion_goes_to_the_workers_after_the_systems_it_combines(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from serlib.experiments import grid

    calls: list[list[str]] = []

    def fake_grid(specs, **kwargs):
        calls.append([s.model for s in specs])
        return pd.DataFrame([{"status": "done", "run": s.model} for s in specs])

    monkeypatch.setattr(batch, "_grid_specs", lambda corpus, config, models, *a, **k: [
        SimpleNamespace(model=m, label=m) for m in models])
    monkeypatch.setattr(grid, "run_grid", fake_grid)
    batch.run_corpus_grid("emodb", models=("whisper-fusion", "tier1plus", "whisper-mlp"), seeds=[0], results=tmp_path,
                   scheduler="local")
    assert calls == [["tier1plus", "whisper-mlp"], ["whisper-fusion"]]


def test_the_grid_skips_systems_whose_dependency_is_missing_and_records_failures(tmp_path, monkeypatch, capsys):
    from serlib.experiments import protocol as experiment
    from serlib.features import prepared
    from serlib.features.encoders.weights import WhisperUnavailable

    def fake_run_protocol(config, prepared, *, models, seeds, **kwargs):
        model = models[0]
        if model == "whisper-logreg":
            raise WhisperUnavailable("Whisper-base weights not found")
        if model == "egemaps-svm":
            raise RuntimeError("SMILExtract crashed")
        calls.append((model, list(seeds)))
        return pd.DataFrame([{"model": model, "path": "x"}])

    calls: list = []
    monkeypatch.setattr(prepared, "prepare", lambda config, **kwargs: object())
    monkeypatch.setattr(experiment, "run_protocol", fake_run_protocol)
    monkeypatch.setattr(batch, "_grid_specs", lambda *args, **kwargs: [])  # no run folders to judge here
    out = batch.run_corpus_grid("emodb", seeds=[0, 1, 2], results=tmp_path)
    assert calls == [("tier1", [0, 1, 2]), ("tier1plus", [0, 1, 2]), ("baseline-svm", [0]), ("compare-svm", [0]),
                     ("whisper-mlp", [0, 1, 2]), ("whisper-fusion", [0, 1, 2]),
                     ("whisper-fusion-pooled", [0, 1, 2])]  # each fusion after the systems it reads
    assert list(out.skipped) == ["whisper-logreg"] and list(out.failed) == ["egemaps-svm"]
    printed = capsys.readouterr().out
    assert "skip whisper-logreg: WhisperUnavailable" in printed and "FAILED egemaps-svm: RuntimeError" in printed

    pages = []
    monkeypatch.setattr(batch, "execute", lambda notebook, output, params, **kw: pages.append(notebook) or output)
    with pytest.raises(batch.GridFailed, match="egemaps-svm: RuntimeError: SMILExtract crashed"):
        batch.run_corpus("emodb", results=str(tmp_path), out_dir=tmp_path / "pages", summary=False)
    assert pages == ["dataset_overview.ipynb", "train_evaluate.ipynb"]  # the pages still show what ran


def test_pages_only_never_runs_the_grid(tmp_path, monkeypatch):
    monkeypatch.setattr(batch, "run_corpus_grid", lambda *a, **k: pytest.fail("run_corpus_grid called with train=False"))
    pages = []
    monkeypatch.setattr(batch, "execute", lambda notebook, output, params, **kw: pages.append((notebook, params)) or output)
    batch.run_corpus("emodb", results=str(tmp_path), out_dir=tmp_path / "pages", summary=False, train=False)
    page = dict(pages)["train_evaluate.ipynb"]
    assert page["protocol"] == "speaker-cv" and page["models"] == list(comparisons.REPORT_SYSTEMS)
    assert "seeds" not in page and "data_root" not in page  # the protocol page reads run folders only


def test_error_messages_shown_on_pages_lose_their_machine_paths():
    text = batch.public_text(f"weights missing in {Path.home()}/.cache/torch and /srv/x/y.th; see https://a.org/b/c")
    assert text == "weights missing in ~/.cache/torch and …/y.th; see https://a.org/b/c"
    assert batch.public_text(f"{PROJECT_ROOT}/results/x") == "./results/x"


def test_a_protocol_without_any_run_still_gives_every_table(tmp_path):
    pr = comparisons.protocol_results(tmp_path, "cremad", "speaker-cv", n_resamples=50)
    assert (comparisons.system_table(pr)["runs"] == "not run").all()
    assert comparisons.paired_table(pr)["reading"].str.startswith("not compared").all()
    assert comparisons.per_speaker_uar(pr).empty and comparisons.confusion_sources(pr) == []
    assert "Folds found in the run folders: none" in report.protocol_header(pr)
    assert report.protocol_analysis(pr).startswith("No system has a complete set of runs")


def test_pages_only_ablations_still_say_why_demucs_cannot_run_here(tmp_path, monkeypatch):
    from serlib.features import preprocess

    def no_weights(model):
        raise preprocess.DemucsUnavailable(f"pretrained Demucs '{model}' weights are not available offline")

    monkeypatch.setattr(preprocess, "load_pretrained_demucs", no_weights)
    pages = []
    monkeypatch.setattr(batch, "execute", lambda notebook, output, params, **kw: pages.append(params) or output)
    batch.run_ablations("urdu", ablations=["no-vad", "demucs"], results=str(tmp_path), out_dir=tmp_path, train=False)
    assert list(pages[0]["not_run"]) == ["demucs"] and "DemucsUnavailable" in pages[0]["not_run"]["demucs"]


def test_the_systems_compared_are_chosen_on_validation_speakers_never_on_test():
    from serlib.report.comparisons import ProtocolResults, SystemResult

    class Boot:
        def __init__(self, uar):
            self.uar = uar

    def system(model, val, test):
        runs = pd.DataFrame({"fold": [1], "seed": [0], "best_val_uar": [val], "test_uar": [test]})
        return SystemResult(model, runs, runs, [1], bootstrap=Boot(test))

    pr = ProtocolResults("emodb", "speaker-cv", [1], {
        "egemaps-svm": system("egemaps-svm", val=0.70, test=0.50),   # best on validation
        "compare-svm": system("compare-svm", val=0.60, test=0.80),   # best on test
        "egemaps-svm-spkz": system("egemaps-svm-spkz", val=0.99, test=0.99),  # transductive: never the baseline
        "whisper-logreg": system("whisper-logreg", val=0.90, test=0.70),
        "whisper-mlp": system("whisper-mlp", val=0.80, test=0.95),
    }, [], [])
    assert pr.best(("classical",)) == "egemaps-svm"
    assert pr.best(("encoder",)) == "whisper-logreg"
    assert pr.best(None) == "whisper-logreg"  # any kind: still validation, never test
    assert report.speaker_systems(pr) == ["egemaps-svm", "whisper-logreg"]
    assert comparisons.confusion_sources(pr) == ["whisper-logreg"]


def test_a_tie_on_validation_goes_to_the_system_requested_first_and_is_named():
    from serlib.report.comparisons import ProtocolResults, SystemResult

    class Boot:
        def __init__(self, uar):
            self.uar = uar

    def system(model, test):
        runs = pd.DataFrame({"fold": [1], "seed": [0], "best_val_uar": [1.0], "test_uar": [test]})
        return SystemResult(model, runs, runs, [1], bootstrap=Boot(test))

    pr = ProtocolResults("tess", "speaker-cv", [1], {m: system(m, t) for m, t in
                                                     (("whisper-logreg", 0.4), ("whisper-mlp", 0.7))}, [], [])
    assert pr.best(("encoder",)) == "whisper-logreg"
    assert pr.validation_tie(("encoder",)) == ["whisper-mlp"]
    assert pr.validation_tie(("classical",)) == []


def test_a_system_post_hoc_on_one_corpus_is_marked_and_never_best_there_only():
    from serlib.report.comparisons import ProtocolResults, SystemResult, is_post_hoc, system_label

    class Boot:
        def __init__(self, uar):
            self.uar = uar

    def system(model, val):
        runs = pd.DataFrame({"fold": [1], "seed": [0], "best_val_uar": [val], "test_uar": [val]})
        return SystemResult(model, runs, runs, [1], bootstrap=Boot(val))

    from serlib.report.comparisons import is_post_hoc_here_only
    from serlib.systems.registry import REGISTRY

    assert is_post_hoc("whisper-mlp", "savee") and not is_post_hoc("whisper-mlp", "ravdess")
    assert REGISTRY["whisper-mlp"].post_hoc_reason("savee") and not REGISTRY["whisper-mlp"].post_hoc_reason("ravdess")
    assert is_post_hoc_here_only("whisper-mlp", "savee") and not is_post_hoc_here_only("whisper-fusion-pooled", "savee")
    assert system_label("whisper-mlp", "savee").endswith("(post hoc)")
    assert not system_label("whisper-mlp", "ravdess").endswith("(post hoc)")
    for corpus, best in (("savee", "whisper-logreg"), ("ravdess", "whisper-mlp")):
        pr = ProtocolResults(corpus, "emobox", [1], {"whisper-logreg": system("whisper-logreg", 0.7),
                                                     "whisper-mlp": system("whisper-mlp", 0.8),
                                                     "whisper-fusion": system("whisper-fusion", 0.9)}, [], [])
        assert pr.best(("encoder", "fusion")) == (best if corpus == "savee" else "whisper-fusion")


def test_a_missing_dependency_reads_as_one_clause_without_paths():
    reason = ("DemucsUnavailable: pretrained Demucs 'htdemucs' weights are not available offline (not in the Hugging "
              "Face cache, and 955717e8 in ~/.cache/torch/hub/checkpoints). Provide them by running ...")
    assert report.reader_reason(reason) == "pretrained Demucs 'htdemucs' weights are not available offline"


def test_a_protocol_page_opens_with_its_verdict_and_a_figure_of_every_system(tmp_path):
    write_protocol(tmp_path, {"tier1": (0.5, [0, 1, 2]), "compare-svm": (0.6, [0]), "whisper-logreg": (0.8, [0])})
    pr = comparisons.protocol_results(tmp_path, "emodb", "speaker-cv", ["tier1", "compare-svm", "whisper-logreg"],
                                      n_resamples=100)
    verdict = report.protocol_verdict(pr)
    assert verdict.startswith("**Verdict.** On 6 test speakers, the best system (chosen on validation speakers) is "
                              "Whisper-base + logistic regression")
    assert "The best classical baseline is ComParE + linear SVM" in verdict and "Tier-1, the reproduced" in verdict
    assert "Validation cannot tell" not in verdict
    fig = report.plot_protocol(pr)
    assert len(fig.axes[0].patches) == 3 and "6 test speakers" in fig.axes[0].get_xlabel()


def test_the_verdict_says_when_validation_could_not_choose(tmp_path):
    write_protocol(tmp_path, {"tier1": (0.99, [0]), "whisper-logreg": (0.99, [0])})
    pr = comparisons.protocol_results(tmp_path, "emodb", "speaker-cv", ["tier1", "whisper-logreg"], n_resamples=100)
    assert "Validation cannot tell it from 1 other system(s)" in report.protocol_verdict(pr)


def test_the_header_lists_other_systems_by_label_and_leaves_the_z_scored_ones_to_their_section(tmp_path):
    write_protocol(tmp_path, {"tier1": (0.5, [0]), "egemaps-logreg": (0.6, [0]), "compare-svm-spkz": (0.7, [0])})
    pr = comparisons.protocol_results(tmp_path, "emodb", "speaker-cv", ["tier1"], n_resamples=50)
    header = report.protocol_header(pr)
    assert "not shown on this page): eGeMAPS + logistic regression." in header
    assert "z-score" not in header


def test_a_deterministic_system_counts_its_seed_0_runs_only(tmp_path):
    write_protocol(tmp_path, {"baseline-svm": (0.6, [0, 1, 2]), "tier1": (0.5, [0, 1])})
    pr = comparisons.protocol_results(tmp_path, "emodb", "speaker-cv", ["baseline-svm", "tier1"], n_resamples=50)
    assert pr.systems["baseline-svm"].seeds == [0] and pr.systems["tier1"].seeds == [0, 1]
