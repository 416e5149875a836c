"""The numpy sentence encoder behind the optional semantic matching signal.

tests/data/tiny_bert is a random 2-layer BERT written by transformers' BertModel, with the vectors torch
computed for it (expected.json says how): it checks the tokenizer, the safetensors reader and the forward
pass on every machine, with or without the real model installed. tests/data/minilm_reference.json holds
torch's vectors for the real all-MiniLM-L6-v2, checked where `./dev semantic` installed it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from monitor.matching import match_runs
from monitor.matching import semantic as sem
from tests.support.matching.build import build_runs, load_cases

DATA = Path(__file__).parents[1] / "data"
TINY = DATA / "tiny_bert"


def test_the_tokenizer_gives_the_ids_of_berts_own_tokenizer() -> None:
    expected = json.loads((TINY / "expected.json").read_text())
    enc = sem.SentenceEncoder(TINY)
    # Accents, CJK characters, punctuation inside words, unknown words and ## pieces, as BertTokenizer.
    assert [enc.tokenizer.encode(t) for t in expected["texts"]] == expected["ids"]


def test_the_forward_pass_gives_torchs_vectors() -> None:
    expected = json.loads((TINY / "expected.json").read_text())
    got = sem.SentenceEncoder(TINY).encode(expected["texts"])
    assert np.abs(got - np.array(expected["vectors"])).max() < 1e-5
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_padding_in_a_batch_does_not_change_a_vector() -> None:
    enc = sem.SentenceEncoder(TINY)
    alone = enc.encode(["flight search"])[0]
    batched = enc.encode(["flight search", "where to stay : accommodation shortlists and hotel booking"])[0]
    assert np.abs(alone - batched).max() < 1e-5


def test_a_broken_model_file_is_named_in_the_error(tmp_path: Path) -> None:
    for name in ("config.json", "vocab.txt"):
        (tmp_path / name).write_bytes((TINY / name).read_bytes())
    (tmp_path / "model.safetensors").write_bytes(b"\x05\x00")
    with pytest.raises(sem.ModelError, match=r"model\.safetensors"):
        sem.SentenceEncoder(tmp_path)


def test_the_wiring_builds_the_embedder_the_environment_asks_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sem, "bundled_model_dir", lambda: TINY)  # as if the model package were installed
    emb = sem.semantic_embedder(None, {})
    assert isinstance(emb, sem.ModelEmbedder) and emb.model_dir == TINY
    assert sem.semantic_embedder(None, {sem.ENV_SWITCH: "0"}) is None  # the switch turns the default off
    assert sem.semantic_embedder(False, {}) is None
    assert sem.semantic_embedder(True, {sem.ENV_SWITCH: "0"}) is not None  # asked for outright: on


def test_asking_for_the_signal_without_the_model_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    prev, new = build_runs(load_cases(["heavy_paraphrase_travel"])[0])
    monkeypatch.setattr(sem, "bundled_model_dir", lambda: None)
    with pytest.raises(sem.ModelError, match=r"\./dev semantic"):
        sem.semantic_embedder(True, {})
    assert sem.semantic_embedder(None, {}) is None
    assert match_runs(prev, new).matches  # the default carries on without it


@pytest.mark.skipif(sem.bundled_model_dir() is None, reason="the optional model is not installed (./dev semantic)")
def test_the_installed_minilm_gives_torchs_vectors() -> None:
    ref = json.loads((DATA / "minilm_reference.json").read_text())
    model_dir = sem.bundled_model_dir()
    assert model_dir is not None
    got = sem.SentenceEncoder(model_dir).encode(ref["texts"])
    assert np.abs(got - np.array(ref["vectors"])).max() < 1e-4
