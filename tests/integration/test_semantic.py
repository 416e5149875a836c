"""The semantic signal through the matcher, which runs the encoder in a child process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from structlog.testing import capture_logs

from monitor.matching import match_runs
from monitor.matching import semantic as sem
from tests.support.matching.build import build_runs, load_cases

DATA = Path(__file__).parents[1] / "data"
TINY = DATA / "tiny_bert"


def test_the_matcher_uses_the_signal_when_handed_an_embedder_and_says_so() -> None:
    prev, new = build_runs(load_cases(["heavy_paraphrase_travel"])[0])
    d = match_runs(prev, new, explain=True, embedder=sem.ModelEmbedder(TINY), require_semantic=True)
    assert d.matches and all("semantic" in m.signals for m in d.matches)
    # Without one it never looks for a model itself, whatever is installed.
    assert all("semantic" not in m.signals for m in match_runs(prev, new, explain=True).matches)


def test_an_embedder_keeps_a_bounded_cache_of_its_own() -> None:
    texts = ["flight search", "hotel booking", "car rental"]
    emb = sem.ModelEmbedder(TINY, cache_size=2)
    first = emb(texts)
    assert first.shape[0] == 3 and len(emb._cache) == 2
    assert np.abs(emb(texts[1:]) - first[1:]).max() < 1e-6
    assert sem.ModelEmbedder(TINY)._cache == {}  # one embedder's vectors are not another's


def test_a_damaged_model_install_is_logged_and_the_default_diff_goes_on(tmp_path: Path) -> None:
    prev, new = build_runs(load_cases(["heavy_paraphrase_travel"])[0])
    (tmp_path / "model.safetensors").write_bytes(b"\x05")
    (tmp_path / "vocab.txt").write_text("[UNK]\n")
    (tmp_path / "config.json").write_text("{}")
    damaged = sem.ModelEmbedder(tmp_path)
    with capture_logs() as logs:
        d = match_runs(prev, new, explain=True, embedder=damaged)
    assert d.matches and all("semantic" not in m.signals for m in d.matches)
    assert [e["event"] for e in logs] == ["semantic_model_unusable"]
    with pytest.raises(sem.ModelError, match=r"config\.json"):
        match_runs(prev, new, embedder=damaged, require_semantic=True)
