"""Evaluation: reward-model accuracy and calibration, RM-judged win rates with KL and length, report cards."""

from rlhf_studio.evaluation.reward_eval import RewardModelEval, evaluate_reward_model
from rlhf_studio.evaluation.specs import BASE, EvaluationError
from rlhf_studio.evaluation.win_rate import WinRateEval, WinRateSettings, evaluate_win_rate

__all__ = [
    "BASE",
    "EvaluationError",
    "RewardModelEval",
    "WinRateEval",
    "WinRateSettings",
    "evaluate_reward_model",
    "evaluate_win_rate",
]
