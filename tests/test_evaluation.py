"""Evaluation: interval maths on fixed judgements, a reward model whose answers are known by construction,
win rates of tiny policies (a copy of the base ties everywhere with zero KL), report cards and the CLI."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from rlhf_studio.chat import ModelCache
from rlhf_studio.cli import main
from rlhf_studio.data import import_dataset
from rlhf_studio.evaluation.report import card_markdown, comparison_rows, report_card, rows_csv
from rlhf_studio.evaluation.reward_eval import evaluate_reward_model
from rlhf_studio.evaluation.settings import WinRateSettings
from rlhf_studio.evaluation.specs import EvaluationError
from rlhf_studio.evaluation.stats import calibration, judge, sigmoid, wilson_interval, win_rate
from rlhf_studio.evaluation.store import latest_evals, save_eval
from rlhf_studio.evaluation.win_rate import Generated, evaluate_win_rate, summarise
from rlhf_studio.runner.runs import (
    COMPLETED,
    METRICS_FILE,
    RUNNING,
    create_run,
    finish_status,
    run_dir,
    update_status,
)
from rlhf_studio.stages.reward import RewardJobConfig
from rlhf_studio.stages.sft import SFTJobConfig

# ---------------------------------------------------------------- arithmetic on fixed judgements


def test_wilson_interval_matches_published_values():
    assert wilson_interval(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_win_rate_splits_wins_ties_losses_with_intervals():
    rate = win_rate([1] * 6 + [0] * 2 + [-1] * 2)
    assert (rate.n, rate.wins, rate.ties, rate.losses) == (10, 6, 2, 2)
    assert (rate.win, rate.tie, rate.loss, rate.preference) == pytest.approx((0.6, 0.2, 0.2, 0.7))
    assert rate.win_interval == pytest.approx((0.3127, 0.8318), abs=1e-4)
    assert rate.preference_interval == pytest.approx(wilson_interval(7, 10))
    with pytest.raises(ValueError):
        win_rate([2])


def test_judge_counts_small_differences_as_ties():
    assert [judge(1.0, 0.5), judge(0.5, 1.0), judge(1.0, 1.0)] == [1, -1, 0]
    assert judge(1.0, 0.9, tie_margin=0.2) == 0


def test_calibration_bins_by_confidence_of_the_pick():
    table = calibration([4.0, 4.0, -4.0, 0.1, -0.1], bins=5)
    low, high = table  # confidence sigmoid(0.1) = 0.525 in the first bin, sigmoid(4) = 0.982 in the last
    assert (low.count, low.observed, low.predicted) == (2, 0.5, pytest.approx(sigmoid(0.1)))
    assert (high.count, high.observed, high.predicted) == (3, pytest.approx(2 / 3), pytest.approx(sigmoid(4)))
    assert (low.low, high.high) == (0.5, 1.0)


def test_summary_puts_length_beside_the_win_rate():
    settings = WinRateSettings()
    ours = Generated(
        texts=["a", "b", "c", "d"], lengths=[10, 10, 2, 2], truncated=[False] * 4, kl=[1, 2, 3, 4]
    )
    theirs = Generated(texts=["w", "x", "y", "z"], lengths=[5, 5, 5, 5], truncated=[True] + [False] * 3)
    result = summarise(
        names=("run:c", "base-model", "run:rm", "run:ref", "prompts"),
        settings=settings,
        questions=["p1", "p2", "p3", "p4"],
        replies=(ours, theirs),
        scores=([2.0, 2.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]),
    )
    assert result.win_rate["wins"] == 2 and result.win_rate["losses"] == 1 and result.win_rate["ties"] == 1
    assert result.mean_kl == pytest.approx(2.5)
    assert (result.candidate_length, result.baseline_length) == (6.0, 5.0)
    assert result.longer_share == 0.5
    assert result.win_when_not_longer == 0.0  # both wins came with longer replies
    assert result.length_score_correlation == pytest.approx(12 / (64 * 2.75) ** 0.5)  # Pearson by hand
    assert result.truncated_baseline == 0.25
    assert result.samples[0]["judgement"] == 1


# ---------------------------------------------------------------- a reward model with known answers


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_reward_model_accuracy_on_a_set_with_a_known_answer(workspace, known_reward_dir, tmp_path):
    pairs = [
        {"prompt": f"Question {i}?", "chosen": f"Answer {i}!", "rejected": f"Reply {i}?"} for i in range(7)
    ]
    pairs += [{"prompt": f"Other {i}?", "chosen": f"Maybe {i}?", "rejected": f"Sure {i}!"} for i in range(3)]
    import_dataset(workspace, write_jsonl(tmp_path / "known.jsonl", pairs), "known", eval_fraction=0.0)

    result = evaluate_reward_model(ModelCache(workspace), str(known_reward_dir), "known", split="all")

    assert result.pairs == 10
    assert result.accuracy == pytest.approx(0.7)
    assert result.mean_margin == pytest.approx((7 * 8 - 3 * 8) / 10, abs=1e-3)
    assert result.mean_chosen == pytest.approx((7 * 4 - 3 * 4) / 10, abs=1e-3)
    assert result.accuracy_interval == pytest.approx(wilson_interval(7, 10))
    [only_bin] = result.calibration  # every pair is judged with confidence sigmoid(8)
    assert (only_bin.count, only_bin.observed) == (10, pytest.approx(0.7))
    assert result.calibration_error == pytest.approx(sigmoid(8) - 0.7, abs=1e-3)
    assert all(row["margin"] < 0 for row in result.hardest[:3])


def test_reward_model_evaluation_refuses_prompt_only_data(workspace, known_reward_dir, tmp_path):
    import_dataset(
        workspace, write_jsonl(tmp_path / "p.jsonl", [{"prompt": "Hi?"}]), "prompts", eval_fraction=0
    )
    with pytest.raises(EvaluationError, match="preference pairs"):
        evaluate_reward_model(ModelCache(workspace), str(known_reward_dir), "prompts", split="all")


# ---------------------------------------------------------------- win rates of tiny policies

PROMPTS = [{"prompt": f"Tell me fact number {i}."} for i in range(6)]
QUICK = WinRateSettings(max_new_tokens=6, batch_size=4, temperature=1.0)


def completed_run(workspace, config, model_dir, metrics: list[dict] | None = None) -> str:
    run_id = create_run(workspace, config)
    shutil.copytree(model_dir, run_dir(workspace, run_id) / "model")
    if metrics:
        rows = [json.dumps(row) for row in metrics]
        (run_dir(workspace, run_id) / METRICS_FILE).write_text("\n".join(rows) + "\n")
    finish_status(run_dir(workspace, run_id), COMPLETED)
    return run_id


@pytest.fixture
def eval_setup(workspace, tiny_model_dir, known_reward_dir, tmp_path):
    import_dataset(workspace, write_jsonl(tmp_path / "prompts.jsonl", PROMPTS), "held-out", eval_fraction=0.0)
    sft = SFTJobConfig(model=str(tiny_model_dir), dataset="held-out")
    copy_run = completed_run(workspace, sft, tiny_model_dir)
    judge_run = completed_run(
        workspace, RewardJobConfig(model=str(tiny_model_dir), dataset="held-out"), known_reward_dir
    )
    return workspace, copy_run, judge_run


def test_a_copy_of_the_base_ties_everywhere_with_zero_kl(eval_setup, tiny_model_dir):
    workspace, copy_run, judge_run = eval_setup
    result = evaluate_win_rate(ModelCache(workspace), copy_run, "base", judge_run, "held-out", QUICK)

    assert result.baseline == str(tiny_model_dir) and result.reference == str(tiny_model_dir)
    assert result.win_rate["n"] == 6 and result.win_rate["tie"] == 1.0  # same weights, same seeds
    assert result.mean_kl == pytest.approx(0.0, abs=1e-4)
    assert [s["candidate"] for s in result.samples] == [s["baseline"] for s in result.samples]
    assert 0 < result.candidate_length <= QUICK.max_new_tokens


def test_a_changed_policy_has_positive_kl_and_reproducible_judgements(eval_setup, tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    workspace, copy_run, judge_run = eval_setup
    sharper = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        sharper.lm_head.weight.mul_(40)  # far from the near-uniform random base: KL clearly above 0
    other = tmp_path / "sharper"
    sharper.save_pretrained(other)
    shutil.copy(tiny_model_dir / "tokenizer.json", other)
    shutil.copy(tiny_model_dir / "tokenizer_config.json", other)
    candidate = completed_run(workspace, SFTJobConfig(model=str(tiny_model_dir), dataset="held-out"), other)
    first = evaluate_win_rate(ModelCache(workspace), candidate, copy_run, judge_run, "held-out", QUICK)
    again = evaluate_win_rate(ModelCache(workspace), candidate, copy_run, judge_run, "held-out", QUICK)

    assert first.mean_kl > 1.0
    assert all(sample["kl"] > 0 for sample in first.samples)
    assert first.baseline == f"run:{copy_run}"
    assert first.samples == again.samples  # fixed seeds: the same replies and scores
    rate = first.win_rate
    assert rate["wins"] + rate["ties"] + rate["losses"] == 6


def test_win_rate_refuses_what_it_cannot_compare(eval_setup):
    workspace, copy_run, judge_run = eval_setup
    cache = ModelCache(workspace)
    with pytest.raises(EvaluationError, match="same model"):
        evaluate_win_rate(cache, copy_run, copy_run, judge_run, "held-out", QUICK)
    with pytest.raises(EvaluationError, match="language model"):
        evaluate_win_rate(cache, copy_run, "base", copy_run, "held-out", QUICK)
    update_status(run_dir(workspace, copy_run), state=RUNNING)
    with pytest.raises(EvaluationError, match="is running"):
        evaluate_win_rate(cache, copy_run, "base", judge_run, "held-out", QUICK)
    with pytest.raises(EvaluationError, match="temperature"):
        evaluate_win_rate(cache, copy_run, "base", judge_run, "held-out", WinRateSettings(temperature=0))


# ---------------------------------------------------------------- stored results, report cards, CLI


def test_cli_evaluates_stores_and_reports(eval_setup, capsys):
    workspace, copy_run, judge_run = eval_setup
    args = ["eval", "winrate", copy_run, "--baseline", "base", "--judge", judge_run, "--prompts", "held-out"]
    assert main([*args, "--max-new-tokens", "4", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["win_rate"]["n"] == 6 and printed["settings"]["max_new_tokens"] == 4
    [stored] = latest_evals(workspace, copy_run)
    assert stored["win_rate"] == printed["win_rate"] and stored["created"]

    assert main(["report", copy_run]) == 0
    card_text = capsys.readouterr().out
    assert "Win rate vs" in card_text and "95% CI" in card_text and "mean KL" in card_text

    assert main(["eval", "winrate", "no-such-run", "--baseline", "base", "--judge", judge_run,
                 "--prompts", "held-out"]) == 1  # fmt: skip
    assert "error:" in capsys.readouterr().err
    assert main(["eval", "rm", judge_run]) == 1  # it trained on prompt-only data: no pairs to score
    assert "preference pairs" in capsys.readouterr().err


def test_report_card_reads_lineage_training_and_evaluations(workspace, tiny_model_dir):
    sft = SFTJobConfig(model=str(tiny_model_dir), dataset="d")
    metrics = [
        {"step": 1, "loss": 2.0, "eval_loss": 2.5},
        {"step": 2, "loss": 1.0},
        {"step": 3, "eval_loss": 1.5},
    ]
    parent = completed_run(workspace, sft, tiny_model_dir, metrics)
    child = completed_run(
        workspace, SFTJobConfig(model=f"run:{parent}", dataset="d", parent_run=parent), tiny_model_dir
    )
    rm_result = {"kind": "rm", "dataset": "d", "split": "eval", "pairs": 4, "accuracy": 0.75}
    rm_result |= {"accuracy_interval": [0.3, 0.95], "mean_margin": 1.0, "calibration_error": 0.1}
    save_eval(workspace, child, rm_result)

    card = report_card(workspace, parent)
    assert card["learning"] == {"eval_loss": [2.5, 1.5], "loss": [2.0, 1.0]}
    child_card = report_card(workspace, child)
    assert child_card["lineage"] == [{"run_id": parent, "stage": "sft", "dataset": "d"}]
    assert "75.0%" in card_markdown(child_card)
    rows = comparison_rows(workspace, [parent, child])
    assert rows[1]["rm_accuracy"] == 0.75 and rows[1]["parent"] == parent
    assert rows_csv(rows).splitlines()[0].startswith("run_id,stage,state")
