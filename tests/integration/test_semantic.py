"""The semantic signal through the matcher, which runs the encoder in a child process."""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from monitor.matching import match_runs
from monitor.matching import semantic as sem
from tests.support.matching.build import build_runs, load_cases

DATA = Path(__file__).parents[1] / "data"
TINY = DATA / "tiny_bert"


def test_the_matcher_uses_the_signal_when_a_model_is_there_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    prev, new = build_runs(load_cases(["heavy_paraphrase_travel"])[0])
    monkeypatch.setattr(sem, "bundled_model_dir", lambda: TINY)
    d = match_runs(prev, new, explain=True, semantic=True)
    assert d.matches and all("semantic" in m.signals for m in d.matches)
    monkeypatch.setenv(sem.ENV_SWITCH, "0")  # the switch turns the default (None) off
    assert all("semantic" not in m.signals for m in match_runs(prev, new, explain=True).matches)


def test_a_damaged_model_install_is_logged_and_the_default_diff_goes_on(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    prev, new = build_runs(load_cases(["heavy_paraphrase_travel"])[0])
    monkeypatch.delenv(sem.ENV_SWITCH, raising=False)  # the default path, whatever the caller's environment
    (tmp_path / "model.safetensors").write_bytes(b"\x05")
    (tmp_path / "vocab.txt").write_text("[UNK]\n")
    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setattr(sem, "bundled_model_dir", lambda: tmp_path)
    sem.clear_cache()
    with capture_logs() as logs:
        d = match_runs(prev, new, explain=True)
    assert d.matches and all("semantic" not in m.signals for m in d.matches)
    assert [e["event"] for e in logs] == ["semantic_model_unusable"]
    with pytest.raises(sem.ModelError, match=r"config\.json"):
        match_runs(prev, new, semantic=True)
