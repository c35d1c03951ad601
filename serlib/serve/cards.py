"""Model cards: what a shipped model was trained on, how it scores, and what it is for.

A card is built from the model's sidecar alone (:mod:`serlib.serve.shipped`): the
corpus facts (:file:`serlib/data/corpus_facts.yaml`), the system's figures over
its whole protocol (``protocol_results``), and the cross-corpus figures the report
has for the corpus (``cross_corpus``), both recorded in the sidecar by
``python -m serlib.serve.shipped protocol-figures``. ``serlib models --card NAME``
prints it; :func:`write_readme_cards` keeps the cards in the models README.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any

import yaml

CARDS_BEGIN = "<!-- model cards: written by `python -m serlib.serve.shipped cards`; do not edit by hand -->"
CARDS_END = "<!-- end of model cards -->"


def corpus_facts() -> dict[str, dict[str, str]]:
    """Language, kind of speech, speakers and licence of each corpus."""
    text = (importlib.resources.files("serlib") / "data" / "corpus_facts.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def _pct(value: Any) -> str:
    return f"{100 * float(value):.1f}" if isinstance(value, (int, float)) else "—"


def _corpus_line(corpus: str) -> str:
    facts = corpus_facts().get(corpus, {})
    return (f"{facts.get('name', corpus)} ({facts.get('language', '?')}, {facts.get('speech', '?')}; "
            f"{facts.get('speakers', '?')}; licence {facts.get('licence', '?')})")


def card(meta: dict[str, Any]) -> str:
    """The card of one shipped model (Markdown), from its sidecar's fields."""
    from serlib.data.corpora import ordered_labels
    from serlib.systems.registry import REGISTRY

    facts = corpus_facts().get(str(meta.get("corpus")), {})
    system = str(meta.get("model") or "")
    spec = REGISTRY.get(system)
    label = spec.label if spec else system
    why = spec.post_hoc_reason(str(meta.get("corpus"))) if spec else ""
    post_hoc = f" **Post hoc:** {why}." if why else ""
    whole = meta.get("protocol_results") if isinstance(meta.get("protocol_results"), dict) else {}
    trained = [c for c in meta.get("training_corpora") or [] if c != meta.get("corpus")]
    lines = [f"### `{meta.get('name')}`", "",
             f"- **System:** {label} (`{system}`).{post_hoc}",
             f"- **Classes:** {', '.join(ordered_labels(meta.get('labels') or []))}."]
    if trained and not (meta.get("training_corpora") or []).count(meta.get("corpus")):
        lines += [f"- **Trained on** {len(trained)} corpora: " + "; ".join(_corpus_line(c) for c in trained)
                  + ". The model inherits each licence.",
                  f"- **Tested on:** every clip of {facts.get('name', meta.get('corpus'))}, a corpus it never saw "
                  f"(protocol `{meta.get('protocol')}`: validation speakers were carved from the training corpora). "
                  f"The shipped weights are the run of seed {meta.get('seed')} (`{meta.get('source_run')}`), "
                  f"which scored {_pct(meta.get('test_uar'))} % UAR there."]
    else:
        lines += [f"- **Trained on:** {facts.get('name', meta.get('corpus'))}: {facts.get('language', '?')}, "
                  f"{facts.get('speech', '?')}; {facts.get('speakers', '?')}. Licence: {facts.get('licence', '?')}; "
                  "the model inherits it."
                  + (f" Every clip of {', '.join(trained)} was added to training." if trained else ""),
                  f"- **Protocol:** `{meta.get('protocol')}` (test speakers never trained on). The shipped weights "
                  f"are the run of fold {meta.get('fold')}, seed {meta.get('seed')} (`{meta.get('source_run')}`); "
                  f"that fold alone scored {_pct(meta.get('test_uar'))} % test UAR."]
    if whole.get("pooled_uar") is not None:
        ci = whole.get("pooled_ci95") or [None, None]
        spread = f" ± {_pct(whole['std_of_folds'])}" if whole.get("std_of_folds") is not None else ""
        folds = (f"mean ± std of {whole.get('folds')} folds" if whole.get("folds", 1) > 1 else "one fold")
        lines.append(f"- **Test UAR of the system over the protocol:** {_pct(whole['mean_of_folds'])}{spread} % "
                     f"({folds}, seeds {', '.join(map(str, whole.get('seeds', [])))}); "
                     f"pooled {_pct(whole['pooled_uar'])} % [95 % CI {_pct(ci[0])}, {_pct(ci[1])}] resampling "
                     f"{whole.get('test_speakers')} test speakers.")
    else:
        lines.append("- **Test UAR over the protocol:** not recorded (run `python -m serlib.serve.shipped "
                     "protocol-figures`).")
    held = meta.get("held_out") if isinstance(meta.get("held_out"), dict) else {}
    if held.get("uar"):
        names = {c: corpus_facts().get(c, {}).get("name", c) for c in held["uar"]}
        cells = ", ".join(f"{names[c]} {_pct(u)}" for c, u in held["uar"].items())
        lines.append(f"- **On corpora it never saw** (the same recipe with each corpus held out in turn, trained on "
                     f"the others, the classes {', '.join(held.get('classes', []))}, pooled UAR %): {cells}; mean "
                     f"{_pct(held.get('mean'))}.")
    cross = meta.get("cross_corpus") if isinstance(meta.get("cross_corpus"), dict) else {}
    if cross.get("uar"):
        names = {c: corpus_facts().get(c, {}).get("name", c) for c in cross["uar"]}
        cells = ", ".join(f"{names[c]} {_pct(u)}" for c, u in cross["uar"].items() if c != meta.get("corpus"))
        lines.append(f"- **On other corpora** (the report's cross-corpus study: {cross.get('system_label')} trained on "
                     f"fold 1 of this corpus, the {len(cross.get('classes', []))} classes "
                     f"{', '.join(cross.get('classes', []))}, UAR %): {cells}. Expect accuracy well below the "
                     "in-corpus figure on recordings unlike the training corpus.")
    if held.get("uar"):
        lines += ["- **Intended use:** research on speech emotion recognition; labelling short clips (a few seconds) "
                  "of one speaker from recordings unlike any one corpus, in the four classes above. On a set of at "
                  "least 20 files from one source, `serlib predict --own-statistics` standardises them with their "
                  "own statistics (transductive); on held-out corpora that mostly scored higher (the report's page "
                  "*One model for many corpora*).",
                  "- **Known limits:** trained on acted speech, and on natural speech from one corpus (URDU); "
                  "English, German and Urdu only; one label per clip, or per speech segment with `serlib predict "
                  "--segments`; not for decisions about people (hiring, health, security)."]
        return "\n".join(lines) + "\n"
    lines += ["- **Intended use:** research on speech emotion recognition; labelling short clips (a few seconds) "
              "of one speaker, recorded cleanly, in the training corpus's language and speaking style.",
              "- **Known limits:** trained on "
              + ("acted" if "acted" in facts.get("speech", "acted") else "natural") + " speech from few speakers; "
              "accuracy drops on other corpora, languages, recording conditions and spontaneous speech; one label "
              "per clip, or per speech segment with `serlib predict --segments`; not for decisions about people "
              "(hiring, health, security)."]
    return "\n".join(lines) + "\n"


def readme_cards(models: list[Any]) -> str:
    """The cards section of the models README for these shipped models."""
    return "\n".join([CARDS_BEGIN, "", *[card(m.meta) for m in models], CARDS_END])


def write_readme_cards(readme: str | Path, models: list[Any]) -> None:
    """Replace the cards section of ``readme`` (between the markers, appended when absent)."""
    path = Path(readme)
    text = path.read_text(encoding="utf-8")
    section = readme_cards(models)
    if CARDS_BEGIN in text and CARDS_END in text:
        start, end = text.index(CARDS_BEGIN), text.index(CARDS_END) + len(CARDS_END)
        text = text[:start] + section + text[end:]
    else:
        text = text.rstrip("\n") + "\n\n## Model cards\n\n" + section + "\n"
    path.write_text(text, encoding="utf-8")


__all__ = ["corpus_facts", "card", "readme_cards", "write_readme_cards", "CARDS_BEGIN", "CARDS_END"]
