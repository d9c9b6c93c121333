"""Evaluation: reward-model accuracy and calibration, RM-judged win rates with KL and length, report cards.

    reward_eval.py   evaluate_reward_model: accuracy, margin, calibration on labelled pairs
    win_rate.py      evaluate_win_rate: candidate vs baseline on held-out prompts, judged by a reward model
    settings.py      WinRateSettings      specs.py   run ids -> model specs, "base", EvaluationError
    stats.py         Wilson intervals, win/tie/loss, calibration bins (pure arithmetic)
    store.py         results kept in <run>/evals/     report.py   report cards and comparison tables
    cli.py           `eval rm`, `eval winrate`, `report`

Modules that load models (reward_eval, win_rate) are imported where they are used, so the CLI starts fast.
"""
