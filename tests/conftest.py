"""Shared fixtures: small generated corpora, a fast config, a prepared feature set.

Everything is generated on the fly (serlib.data.synthetic) so the suite needs no
corpus audio; tests that use the real copies in ../shared/data are marked
``realdata`` and skip with a reason when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test` runs files on one worker per core: one thread each
    for _variable in ("SERLIB_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_variable, "1")

import pytest

from serlib.config import SMOKE_OVERRIDES, Config, load_config
from serlib.data.synthetic import write_synthetic_corpus


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow end-to-end tests first, so that under ``make test`` a worker starts on them at once."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


SHARED_DATA = Path(os.environ.get("SERLIB_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def fast_overrides() -> list[str]:
    """A config small enough to train in seconds on two cores."""
    return list(SMOKE_OVERRIDES) + ["train.epochs=3", "train.batch_size=8", "train.patience=5", "preprocess.vad=false"]


@pytest.fixture(scope="session")
def fast_config() -> Config:
    return load_config(overrides=fast_overrides() + ["data.corpus=ravdess", "data.protocol=speaker-split"])


@pytest.fixture(scope="session")
def synthetic_ravdess(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_corpus("ravdess", tmp_path_factory.mktemp("data") / "ravdess", per_class=2, seconds=0.8)


@pytest.fixture(scope="session")
def synthetic_emodb(synthetic_ravdess: Path) -> Path:
    """A generated EmoDB beside the generated RAVDESS (an extra training corpus)."""
    return write_synthetic_corpus("emodb", synthetic_ravdess.parent / "emodb", per_class=2, seconds=0.8)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def prepared_ravdess(synthetic_ravdess: Path, fast_config: Config, cache_dir: Path):
    from serlib.features.prepared import prepare

    return prepare(fast_config, data_root=synthetic_ravdess, cache_dir=cache_dir, workers=1, progress=False)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "ravdess").is_dir():
        pytest.skip(f"real audio not found at {SHARED_DATA} (set SERLIB_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tier1_run(prepared_ravdess, fast_config, tmp_path_factory) -> Path:
    """A finished tiny Tier-1 run (the generated RAVDESS, speaker-split fold 1, seed 0)."""
    from serlib.features.prepared import split_for
    from serlib.systems.tier1.trainer import fit

    folder = tmp_path_factory.mktemp("results") / "ravdess" / "speaker-split" / "tier1" / "fold-1" / "seed-0"
    fit(prepared_ravdess.features, split_for(prepared_ravdess.features, fast_config, 0), fast_config, folder,
        progress=False, extra_provenance={"fold": 1, "protocol": "speaker-split"})
    return folder


@pytest.fixture
def shipped_tiny(tier1_run, tmp_path, monkeypatch) -> Path:
    """The generated Tier-1 run shipped as ``tiny`` in a models folder that replaces the package's."""
    import serlib.serve.shipped
    from serlib.serve.shipped import export_run

    models = tmp_path / "models"
    export_run(tier1_run, "tiny", out_dir=models)
    monkeypatch.setattr(serlib.serve.shipped, "MODELS_DIR", models)
    return models
