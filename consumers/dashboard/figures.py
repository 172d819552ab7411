"""Plotly figures: a stream's score history and an upload's per-frame scores, threshold drawn."""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go

from detector.records import HistoryEntry

FAKE_COLOUR = "#d62728"
REAL_COLOUR = "#2ca02c"
ROLLING_COLOUR = "#1f77b4"
THRESHOLD_COLOUR = "#7f7f7f"
# One colour per track line, none of them the verdict colours of the dots.
TRACK_COLOURS = ("#1f77b4", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#bcbd22")


def _base_layout(title: str, height_px: int) -> dict:
    return dict(
        title=dict(text=title, x=0.01, font=dict(size=14)),
        height=height_px,
        margin=dict(l=50, r=20, t=40, b=40),
        xaxis=dict(title="frame index"),
        yaxis=dict(title="fake probability", range=[0, 1.02]),
        legend=dict(orientation="h", y=-0.25),
        template="plotly_white",
        uirevision="keep",   # zoom and legend toggles survive live updates
    )


def _add_threshold(figure: go.Figure, threshold: float | None) -> None:
    if threshold is None:
        return
    figure.add_hline(y=threshold, line=dict(color=THRESHOLD_COLOUR, dash="dash", width=1),
                     annotation_text=f"threshold {threshold:.2f}",
                     annotation_position="top left")


def placeholder_figure(message: str, height_px: int = 320) -> go.Figure:
    """An empty chart with a centred message (no stream selected, no points yet)."""
    figure = go.Figure(layout=_base_layout("", height_px))
    figure.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper",
                          yref="paper", font=dict(size=14, color=THRESHOLD_COLOUR))
    return figure


def _marker_colours(scores: Sequence[float | None], threshold: float | None) -> list[str]:
    if threshold is None:
        return [ROLLING_COLOUR for _ in scores]
    return [FAKE_COLOUR if s is not None and s >= threshold else REAL_COLOUR for s in scores]


def history_figure(stream_id: str, points: Sequence[HistoryEntry], threshold: float | None,
                   height_px: int = 320) -> go.Figure:
    """Frame scores (dots, red at or above the threshold) and one rolling-score line per face
    track (``track 1``, ``track 2`` …; the stream's score is the highest of them).

    Frames without a face have no dot; a track's line breaks where the track has no value.
    A history written before tracks (schema version 1) draws the stream's rolling score.
    """
    if not points:
        return placeholder_figure(f"{stream_id}: no scored frames yet", height_px)
    scored = [p for p in points if p.frame_score is not None]
    figure = go.Figure(layout=_base_layout(f"{stream_id} — score history", height_px))
    figure.add_trace(go.Scatter(
        x=[p.frame_index for p in scored], y=[p.frame_score for p in scored],
        mode="markers", name="frame score",
        marker=dict(size=6, color=_marker_colours([p.frame_score for p in scored], threshold)),
    ))
    track_ids = sorted({track_id for p in points for track_id in p.track_scores})
    for position, track_id in enumerate(track_ids):
        present = [i for i, p in enumerate(points) if track_id in p.track_scores]
        span = points[present[0]:present[-1] + 1]
        figure.add_trace(go.Scatter(
            x=[p.frame_index for p in span], y=[p.track_scores.get(track_id) for p in span],
            mode="lines", name=f"track {track_id}", connectgaps=False,
            line=dict(color=TRACK_COLOURS[position % len(TRACK_COLOURS)], width=2),
        ))
    if not track_ids:
        figure.add_trace(go.Scatter(
            x=[p.frame_index for p in points], y=[p.rolling_score for p in points],
            mode="lines", name="rolling score", connectgaps=False,
            line=dict(color=ROLLING_COLOUR, width=2),
        ))
    _add_threshold(figure, threshold)
    return figure


def upload_figure(filename: str, frame_indices: Sequence[int], frame_scores: Sequence[float | None],
                  threshold: float, height_px: int = 280) -> go.Figure:
    """Per-frame scores of an uploaded video or image; frames without a face are left out."""
    pairs = [(i, s) for i, s in zip(frame_indices, frame_scores) if s is not None]
    if not pairs:
        return placeholder_figure(f"{filename}: no face found in the scored frames", height_px)
    figure = go.Figure(layout=_base_layout(f"{filename} — per-frame score", height_px))
    figure.add_trace(go.Scatter(
        x=[i for i, _ in pairs], y=[s for _, s in pairs], mode="lines+markers",
        name="frame score", line=dict(color=ROLLING_COLOUR, width=1),
        marker=dict(size=7, color=_marker_colours([s for _, s in pairs], threshold)),
    ))
    _add_threshold(figure, threshold)
    return figure
