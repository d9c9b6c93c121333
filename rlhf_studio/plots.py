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


def calibration_figure(bins: list[dict]) -> go.Figure:
    """A reward model's calibration: predicted vs observed agreement per confidence bin, the diagonal ideal.

    bins: dicts with `predicted`, `observed` and `count` (evaluation.stats.CalibrationBin as a dict).
    """
    figure = go.Figure()
    figure.add_trace(
        go.Scatter(
            x=[0.5, 1], y=[0.5, 1], mode="lines", name="calibrated", line={"dash": "dot", "color": "gray"}
        )
    )
    figure.add_trace(
        go.Scatter(
            x=[row["predicted"] for row in bins],
            y=[row["observed"] for row in bins],
            mode="lines+markers+text",
            text=[f"n={row['count']}" for row in bins],
            textposition="top center",
            marker={"size": [8 + min(row["count"], 200) ** 0.5 * 2 for row in bins]},
            name="reward model",
        )
    )
    figure.update_layout(
        title={
            "text": "calibration: confidence of the RM's pick vs how often it agrees",
            "font": {"size": 14},
        },
        xaxis={
            "title": "predicted P(pick is preferred) = sigmoid(|score difference|)",
            "range": [0.48, 1.02],
        },
        yaxis={"title": "observed agreement", "range": [-0.02, 1.05]},
        height=320,
        margin={"l": 50, "r": 10, "t": 40, "b": 50},
        legend={"orientation": "h", "y": -0.3},
    )
    return figure


def win_rate_figure(results: list[dict]) -> go.Figure:
    """Win / tie / loss bars per comparison, with the 95% interval of the win share drawn on the win bar."""
    labels = [f"{row['candidate']} vs {row['baseline']}" for row in results]
    figure = go.Figure()
    for part, color in (("win", "#2e7d32"), ("tie", "#9e9e9e"), ("loss", "#c62828")):
        shares = [row["win_rate"][part] for row in results]
        error = None
        if part == "win":
            error = {
                "type": "data",
                "symmetric": False,
                "array": [row["win_rate"]["win_interval"][1] - row["win_rate"]["win"] for row in results],
                "arrayminus": [
                    row["win_rate"]["win"] - row["win_rate"]["win_interval"][0] for row in results
                ],
            }
        figure.add_trace(
            go.Bar(y=labels, x=shares, name=part, orientation="h", marker_color=color, error_x=error)
        )
    figure.update_layout(
        barmode="stack",
        xaxis={"title": "share of prompts", "range": [0, 1], "tickformat": ".0%"},
        height=120 + 50 * len(results),
        margin={"l": 10, "r": 10, "t": 30, "b": 40},
        legend={"orientation": "h", "y": 1.15},
    )
    return figure
