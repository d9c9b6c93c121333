"""Pure functions from rows of numbers to plotly figures (no gradio)."""

from __future__ import annotations

import plotly.graph_objects as go


def length_histogram(lengths_by_field: dict[str, list[int]], unit: str = "tokens") -> go.Figure:
    """Overlaid histograms of text lengths, one trace per field (prompt, chosen, rejected, ...)."""
    figure = go.Figure()
    for field, lengths in lengths_by_field.items():
        if lengths:
            figure.add_trace(go.Histogram(x=lengths, name=field, opacity=0.6, nbinsx=40))
    figure.update_layout(
        barmode="overlay",
        xaxis_title=f"length ({unit})",
        yaxis_title="rows",
        height=320,
        margin={"l": 40, "r": 10, "t": 30, "b": 40},
        legend={"orientation": "h", "y": 1.1},
    )
    return figure


# Charts the Monitor tab shows first for each stage; any other logged metric can be added by name.
STAGE_CHARTS = {
    "sft": ["loss", "eval_loss", "mean_token_accuracy", "learning_rate"],
    "rm": ["loss", "eval_accuracy", "eval_margin", "accuracy", "margin"],
    "dpo": [
        "loss",
        "rewards/chosen",
        "rewards/rejected",
        "rewards/margins",
        "rewards/accuracies",
        "eval_rewards/accuracies",
    ],
    "ppo": [
        "objective/scores",
        "objective/kl",
        "objective/rlhf_reward",
        "objective/entropy",
        "policy/clipfrac",
        "loss/value",
        "beta",
    ],
}


def metric_figure(
    curves: dict[str, tuple[list[float], list[float]]], metric: str, x_title: str = "step"
) -> go.Figure:
    """One metric, one line per run: curves maps a run label to its (x, y)."""
    figure = go.Figure()
    for label, (xs, ys) in curves.items():
        figure.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=label, marker={"size": 4}))
    figure.update_layout(
        title={"text": metric, "font": {"size": 14}},
        xaxis_title=x_title,
        height=260,
        margin={"l": 40, "r": 10, "t": 36, "b": 36},
        showlegend=len(curves) > 1,
        legend={"orientation": "h", "y": -0.25},
    )
    return figure
