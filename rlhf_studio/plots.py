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
