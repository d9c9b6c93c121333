"""What bench/gpu_check.py trains on where nothing can be downloaded: random-init models of real shapes, a
locally built tokenizer, generated rows, and each section's results file.

    tokenizer = shaped_tokenizer(49152)    # tests/tiny_model.py's BPE, retrained to the model's vocabulary
    build_model_dir(folder, SHAPES["bundled"], tokenizer)      # SmolLM2-135M-Instruct's shape, random weights
    build_model_dir(folder, SHAPES["7b"], tokenizer_7b, device="cuda", dtype=torch.bfloat16)
    add_dataset(workspace, "gpu-sft", sft_rows(tokenizer, 64, prompt_tokens=128, reply_tokens=256))

The tokenizer's vocabulary is the model's, so that every id a random model samples decodes to text, as chat
and PPO's reward model need. Rows are CORPUS sentences cut to a number of tokens, so a check controls its
sequence lengths exactly.
"""

from __future__ import annotations

import json
import os
import random
import string
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench"), str(REPO / "tests")]

from tiny_model import CORPUS, build_tokenizer  # noqa: E402

from rlhf_studio.data import import_dataset  # noqa: E402
from rlhf_studio.training.common import CAUSAL, REWARD  # noqa: E402
from rlhf_studio.workspace import Workspace  # noqa: E402

# Llama shapes: the studio's bundled model, Llama-2-7B (the seed's "7B in 16 GB"), and tests/tiny_model.py's.
SHAPES: dict[str, dict[str, Any]] = {
    "bundled": dict(
        hidden_size=576, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
        intermediate_size=1536, vocab_size=49152, tie_word_embeddings=True, max_position_embeddings=8192,
        rope_theta=100000.0, rms_norm_eps=1e-5,
    ),
    "7b": dict(
        hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
        intermediate_size=11008, vocab_size=32000, tie_word_embeddings=False, max_position_embeddings=4096,
    ),
    "tiny": dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=64, vocab_size=400, tie_word_embeddings=False, max_position_embeddings=512,
    ),
}  # fmt: skip


DATASETS = {"sft": "gpu-sft", "preference": "gpu-prefs"}  # kind -> the library dataset the check makes


@dataclass
class Plan:
    """The check's settings and folders, which the parent writes to plan.json for its section processes."""

    root: str  # the scratch folder: workspace/, models/, results/, runs/
    shape: str  # of the studio-sized model: "bundled", or "tiny" for --smoke
    steps: int  # optimizer steps per timed run
    rounds: int  # alternating rounds per comparison
    batch: int
    prompt_tokens: int
    reply_tokens: int
    max_length: int
    stages: list[str]  # the stages to time (every registered one by default)
    smoke: bool  # a test of the check itself on a tiny model, on whatever device there is

    @property
    def folder(self) -> Path:
        return Path(self.root)

    @property
    def workspace(self) -> Workspace:
        return Workspace.at(self.folder / "workspace")

    @property
    def model_dir(self) -> Path:
        return self.folder / "models" / self.shape

    @property
    def reward_dir(self) -> Path:
        return self.folder / "models" / f"{self.shape}-reward"

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path) -> Plan:
        return cls(**json.loads(path.read_text()))


def shaped_tokenizer(vocab_size: int):
    """tests/tiny_model.py's tokenizer (byte-level BPE, ChatML template) retrained to `vocab_size` ids.

    The vocabulary is filled with made-up words, so every id a random model samples decodes to text.
    """
    tokenizer = build_tokenizer()
    if vocab_size <= len(tokenizer):
        return tokenizer
    rng = random.Random(0)
    words = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 9))) for _ in range(3 * vocab_size)]
    texts = CORPUS * 20 + [" ".join(words[start : start + 50]) for start in range(0, len(words), 50)]
    shaped = tokenizer.train_new_from_iterator(texts, vocab_size=vocab_size)
    shaped.chat_template = tokenizer.chat_template
    return shaped


def llama_config(shape: dict[str, Any], tokenizer):
    from transformers import LlamaConfig

    return LlamaConfig(
        **shape,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )


def build_model_dir(
    folder: Path,
    shape: dict[str, Any],
    tokenizer,
    head: str = CAUSAL,
    device: str = "cpu",
    dtype=None,
    seed=0,
) -> Path:
    """Save a random-init Llama of `shape` (a causal LM, or a one-output reward model) with `tokenizer`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    config = llama_config(shape, tokenizer)
    torch.manual_seed(seed)
    with torch.device(device):  # the weights are made where they will be used: a 7B on the GPU
        if head == REWARD:
            config.num_labels = 1
            model = AutoModelForSequenceClassification.from_config(config, dtype=dtype or torch.float32)
        else:
            model = AutoModelForCausalLM.from_config(config, dtype=dtype or torch.float32)
            model.generation_config.pad_token_id = tokenizer.pad_token_id
            model.generation_config.eos_token_id = tokenizer.eos_token_id
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


# ---------------------------------------------------------------- rows of known lengths


def token_text(tokenizer, sentences: list[list[int]], tokens: int, rng: random.Random) -> str:
    """Text of about `tokens` tokens: tokenized CORPUS sentences in random order, cut to that many tokens."""
    ids: list[int] = []
    while len(ids) < tokens:
        ids += rng.choice(sentences)
    return tokenizer.decode(ids[:tokens]).strip()


def corpus_sentences(tokenizer) -> list[list[int]]:
    return [tokenizer(" " + sentence, add_special_tokens=False)["input_ids"] for sentence in CORPUS]


def sft_rows(tokenizer, count: int, prompt_tokens: int, reply_tokens: int, seed: int = 0) -> list[dict]:
    rng, sentences = random.Random(seed), corpus_sentences(tokenizer)
    return [
        {
            "prompt": token_text(tokenizer, sentences, prompt_tokens, rng),
            "completion": token_text(tokenizer, sentences, reply_tokens, rng),
        }
        for _ in range(count)
    ]


def preference_rows(
    tokenizer, count: int, prompt_tokens: int, reply_tokens: int, seed: int = 0
) -> list[dict]:
    rng, sentences = random.Random(seed), corpus_sentences(tokenizer)
    return [
        {
            "prompt": token_text(tokenizer, sentences, prompt_tokens, rng),
            "chosen": token_text(tokenizer, sentences, reply_tokens, rng),
            "rejected": token_text(tokenizer, sentences, reply_tokens, rng),
        }
        for _ in range(count)
    ]


def add_dataset(workspace: Workspace, name: str, rows: list[dict]) -> str:
    """Store rows in the workspace library through the data doctor, all of them for training."""
    source = workspace.root / f"{name}.jsonl"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    import_dataset(workspace, source, name, eval_fraction=0.0, overwrite=True)
    return name


# ---------------------------------------------------------------- results and memory


def safely(measure: Callable[..., dict], *args: Any) -> dict:
    """`measure(*args)` with the seconds it took, or the error it raised: one broken measurement must not cost
    the others."""
    started = time.perf_counter()
    try:
        row = measure(*args)
    except Exception as error:
        lines = traceback.format_exc().strip().splitlines()
        row = {"error": f"{type(error).__name__}: {str(error)[:800]}", "traceback": lines[-12:]}
        print(f"    {row['error']}", flush=True)
    return {**row, "seconds": round(time.perf_counter() - started, 1)}


class SectionLog:
    """One section's results, rewritten after every row: a section killed at its time limit keeps its rows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {"rows": []}
        self._write()

    def set(self, **fields: Any) -> None:
        self.data.update(fields)
        self._write()

    def attempt(self, name: str, measure: Callable[..., dict], *args: Any) -> dict:
        """Run `measure(*args)`; its dict, or the error it raised, becomes a row named `name`."""
        print(f"  {name} ...", flush=True)
        row = {"name": name, **safely(measure, *args)}
        self.data["rows"].append(row)
        self._write()
        return row

    def _write(self) -> None:
        partial = self.path.with_suffix(".partial")
        partial.write_text(json.dumps(self.data, indent=1, default=str))
        os.replace(partial, self.path)


def device_used_bytes() -> int | None:
    """Memory in use on GPU 0 by every process (what a card must hold), or None without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return None
    free, total = torch.cuda.mem_get_info(0)
    return total - free


class DevicePeak:
    """Samples the GPU's used memory every `interval` seconds while its block runs: `baseline`, `peak`."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.baseline = self.peak = device_used_bytes()
        self._done = threading.Event()

    def __enter__(self) -> DevicePeak:
        if self.baseline is not None:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._done.set()
        if self.baseline is not None:
            self._thread.join()

    def _sample(self) -> None:
        while not self._done.wait(self.interval):
            self.peak = max(self.peak, device_used_bytes())


def gb(size: float | None) -> float | None:
    """Bytes as GB (10^9 bytes, as the Train tab's estimate and card makers count), 3 decimals."""
    return None if size is None else round(size / 1e9, 3)
