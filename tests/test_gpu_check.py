"""bench/gpu_check.py where there is no GPU: its line without CUDA, its random-init builder, rows and report,
and a smoke run of its stages, runner and chat sections on the tiny model (the sections that need CUDA,
4/8-bit and the 7B, are left to a GPU machine).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_model import build_tokenizer
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from rlhf_studio.model_memory import shape_of_config
from rlhf_studio.training.common import REWARD

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

from gpu_report import report  # noqa: E402
from gpu_setup import SHAPES, build_model_dir, llama_config, sft_rows, shaped_tokenizer  # noqa: E402


def run_check(*args: str, timeout: float) -> subprocess.CompletedProcess:
    command = [sys.executable, str(BENCH / "gpu_check.py"), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_without_cuda_the_check_says_so_in_one_line_and_exits_0():
    finished = run_check(timeout=120)
    assert finished.returncode == 0
    assert finished.stdout.splitlines() == [
        f"gpu_check: no CUDA device on this machine (torch {torch.__version__}); nothing to check."
    ]


def test_the_shapes_are_the_bundled_model_and_a_7b_llama():
    tokenizer = build_tokenizer()
    assert shape_of_config(llama_config(SHAPES["bundled"], tokenizer)).parameters == 134_515_008
    assert shape_of_config(llama_config(SHAPES["7b"], tokenizer)).parameters == 6_738_415_616


def test_the_random_init_builder_saves_a_model_of_the_shape_with_its_tokenizer(tmp_path):
    shape = {**SHAPES["tiny"], "vocab_size": 600}
    tokenizer = shaped_tokenizer(shape["vocab_size"])
    assert len(tokenizer) == 600 and tokenizer.chat_template
    assert all(tokenizer.decode([token]) for token in range(600))  # any sampled id shows as text
    folder = build_model_dir(tmp_path / "policy", shape, tokenizer)
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert {key: getattr(model.config, key) for key in shape} == shape
    assert model.config.pad_token_id == AutoTokenizer.from_pretrained(folder).pad_token_id
    reward = AutoModelForSequenceClassification.from_pretrained(
        build_model_dir(tmp_path / "reward", shape, tokenizer, head=REWARD, seed=1)
    )
    assert reward.config.num_labels == 1 and reward.config.hidden_size == shape["hidden_size"]


def test_generated_rows_have_the_lengths_asked_for():
    tokenizer = build_tokenizer()
    rows = sft_rows(tokenizer, 8, prompt_tokens=40, reply_tokens=90)
    for row in rows:
        assert abs(len(tokenizer(row["prompt"])["input_ids"]) - 40) <= 4
        assert abs(len(tokenizer(row["completion"])["input_ids"]) - 90) <= 4
    assert len({row["prompt"] for row in rows}) == 8


def results_that_missed() -> dict:
    """What gpu_check.py writes, with a ratio below target, memory not released, an error and a skip."""
    return {
        "environment": {"python": "3.12", "packages": {"torch": "2.11"}},
        "plan": {
            "shape": "bundled",
            "steps": 20,
            "rounds": 3,
            "batch": 8,
            "prompt_tokens": 128,
            "reply_tokens": 256,
            "max_length": 512,
        },
        "sections": {
            "stages": {
                "rows": [
                    {
                        "name": "dpo LoRA",
                        "stage": "dpo",
                        "lora": True,
                        "ratio": 0.9,
                        "direct": "hand-built",
                        "studio": {
                            "samples_per_s": 9.0,
                            "tokens_per_s": 6912,
                            "runs": [9.0],
                            "errors": [],
                            "peak_allocated_gb": 1.2,
                            "peak_reserved_gb": 1.5,
                            "device_peak_gb": 2.0,
                            "allocated_before_gb": 0.0,
                        },
                        "trl": {"samples_per_s": 10.0, "tokens_per_s": 7680, "runs": [10.0], "errors": []},
                    }
                ]
            },
            "runner": {
                "rows": [
                    {
                        "name": "SFT LoRA",
                        "state": "completed",
                        "as_expected": True,
                        "message": "",
                        "job_s": 9.0,
                        "peak_above_baseline_gb": 1.1,
                        "trained_on_gpu": True,
                        "after_above_baseline_gb": 0.8,
                        "released_after_s": None,
                    }
                ],
                "ended": "killed by SIGKILL at its time limit",
                "log_tail": ["last words"],
            },
            "big": {"rows": [{"name": "build 7B", "error": "OutOfMemoryError: CUDA out of memory"}]},
        },
        "not_run": {"chat": "needs CUDA"},
    }


def test_the_report_names_what_missed_its_target():
    text = report(results_that_missed())
    assert "ratio 0.900 BELOW 0.97" in text
    assert "NOT RELEASED: +0.8 GB" in text and "| last words" in text
    assert "build 7B: ERROR OutOfMemoryError" in text and "[chat] not run: needs CUDA" in text


@pytest.mark.slow
def test_a_smoke_run_trains_every_section_it_can_without_a_gpu(tmp_path):
    out = tmp_path / "out"
    args = ["--smoke", "--out", str(out), "--budget", "500", "--sections", "stages", "runner", "chat"]
    finished = run_check(*args, "--stages", "sft", "ppo", timeout=560)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    results = json.loads((out / "gpu_check.json").read_text())
    stages = {row["name"]: row for row in results["sections"]["stages"]["rows"]}
    for name in ("sft full", "sft LoRA"):
        assert stages[name]["studio"]["samples_per_s"] > 0 and stages[name]["trl"]["samples_per_s"] > 0
        assert stages[name]["ratio"] > 0 and not stages[name]["studio"]["errors"]
    assert stages["ppo LoRA"]["studio"]["samples_per_s"] > 0 and "trl" not in stages["ppo LoRA"]
    jobs = results["sections"]["runner"]["rows"]
    assert [job["state"] for job in jobs] == ["completed", "completed", "failed", "completed", "completed"]
    assert all(job["as_expected"] for job in jobs)
    first_token = results["sections"]["chat"]["rows"][0]
    assert set(first_token["ratio_to_bare"]) == {
        "engine, base pane",
        "engine, one LoRA pane",
        "engine, three LoRA panes",
    }
    assert "[stages]" in (out / "gpu_check.txt").read_text()
