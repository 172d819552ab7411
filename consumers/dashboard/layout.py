"""The page: live streams (table, history chart, thumbnail), attach/detach, upload and "Why"."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import TYPE_CHECKING

import cv2
import numpy as np
from dash import dcc, html

from consumers.dashboard.figures import placeholder_figure
from detector.records import ScoreRecord, StatusRecord
from detector.stream_status import StreamStatus

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from detector.upload_result import FaceCrop, UploadResult

REFRESH_INTERVAL_MS = 500   # live views poll Redis twice a second at most

VERDICT_COLOURS = {"FAKE": "#d62728", "REAL": "#2ca02c", "NO_FACE": "#7f7f7f",
                   "PENDING": "#7f7f7f", "FAILED": "#d62728"}
STATUS_COLOURS = {StreamStatus.RUNNING: "#2ca02c", StreamStatus.FINISHED: "#1f77b4",
                  StreamStatus.FAILED: "#d62728", StreamStatus.RECONNECTING: "#ff7f0e",
                  StreamStatus.STALLED: "#ff7f0e", StreamStatus.CONNECTING: "#7f7f7f",
                  StreamStatus.DRAINING: "#1f77b4", StreamStatus.STOPPED: "#7f7f7f"}

PAGE_STYLE = {"fontFamily": "system-ui, -apple-system, Segoe UI, sans-serif", "margin": "0 auto",
              "maxWidth": "1280px", "padding": "12px 20px", "color": "#222"}
SECTION_STYLE = {"border": "1px solid #ddd", "borderRadius": "6px", "padding": "12px 16px",
                 "marginBottom": "16px", "background": "#fff"}
CELL_STYLE = {"padding": "4px 10px", "borderBottom": "1px solid #eee", "textAlign": "left"}
# Numbers never wrap ("1375⏎ms" in a narrow window); long text columns do.
NUMBER_STYLE = {**CELL_STYLE, "textAlign": "right", "fontVariantNumeric": "tabular-nums",
                "whiteSpace": "nowrap"}
BANNER_OK = {"padding": "6px 12px", "borderRadius": "4px", "background": "#eef7ee",
             "color": "#225522", "marginBottom": "12px"}
BANNER_DOWN = {"padding": "6px 12px", "borderRadius": "4px", "background": "#fdecea",
               "color": "#8a1c1c", "fontWeight": "bold", "marginBottom": "12px"}
ERROR_STYLE = {"padding": "8px 12px", "borderRadius": "4px", "background": "#fdecea",
               "color": "#8a1c1c", "marginTop": "8px"}
INPUT_STYLE = {"padding": "4px 6px"}
DETAIL_SHOWN = {"display": "flex", "gap": "8px"}
DETAIL_HIDDEN = {"display": "none"}
BUTTON_STYLE = {"padding": "6px 14px", "flex": "0 0 auto"}

EMPTY_STATE = ["No streams yet. Start the service with ", html.Code("deepfake-detector run"),
               " and attach a file, RTSP camera or webcam below, or score files with ",
               html.Code("deepfake-detector replay"),
               "; streams appear here as soon as the service knows them."]


def _score_text(score: float | None) -> str:
    return "—" if score is None else f"{score:.3f}"


def stream_table_rows(streams: Sequence[StatusRecord]) -> list[dict[str, str]]:
    """Display strings for each stream (the table's data, also used to detect changes)."""
    rows = []
    for s in streams:
        status = s.status if not s.error else f"{s.status}: {s.error}"
        rows.append({
            "stream": s.stream_id,
            "status": status,
            "source": s.source,
            "score": _score_text(s.rolling_score),
            "verdict": s.verdict,
            "fps": f"{s.fps:.1f}",
            "scored": str(s.frames_scored),
            "drops": str(s.frames_dropped),
            "latency": "—" if s.latency_ms is None else f"{s.latency_ms:.0f} ms",
        })
    return rows


COLUMNS = (("stream", "stream"), ("status", "status"), ("source", "source"),
           ("score", "rolling score"), ("verdict", "verdict"), ("fps", "fps"),
           ("scored", "scored"), ("drops", "drops"), ("latency", "latency"))
NUMERIC = {"score", "fps", "scored", "drops", "latency"}


def stream_table(rows: Sequence[dict[str, str]]) -> html.Div:
    """The live streams table, or the friendly empty state when there are none."""
    if not rows:
        return html.Div(EMPTY_STATE, id="empty-state",
                        style={"padding": "24px", "color": "#555", "background": "#f7f7f7",
                               "borderRadius": "4px", "textAlign": "center"})
    header = html.Tr([html.Th(title, style=NUMBER_STYLE if key in NUMERIC else CELL_STYLE)
                      for key, title in COLUMNS])
    body = []
    for row in rows:
        cells = []
        for key, _ in COLUMNS:
            style = NUMBER_STYLE if key in NUMERIC else CELL_STYLE
            if key == "verdict":
                style = {**style, "color": VERDICT_COLOURS.get(row[key], "#222"), "fontWeight": "bold"}
            elif key == "status":
                style = {**style, "color": STATUS_COLOURS.get(row[key].split(":")[0], "#222")}
            cells.append(html.Td(row[key], style=style, className=f"col-{key}"))
        body.append(html.Tr(cells, className="stream-row"))
    return html.Div(html.Table([html.Thead(header), html.Tbody(body)],
                               style={"borderCollapse": "collapse", "width": "100%"}),
                    id="streams-table-inner")


def image_data_uri(image: np.ndarray | bytes, is_rgb: bool = True) -> str:
    """``(h, w, 3)`` uint8 image (RGB unless ``is_rgb`` is False) or JPEG bytes → data URI."""
    if isinstance(image, (bytes, bytearray)):
        return "data:image/jpeg;base64," + base64.b64encode(bytes(image)).decode("ascii")
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if is_rgb else image
    ok, encoded = cv2.imencode(".png", bgr)
    if not ok:
        raise ValueError("PNG encoding failed")
    return "data:image/png;base64," + base64.b64encode(encoded.tobytes()).decode("ascii")


def verdict_badge(verdict: str, score: float | None, element_id: str) -> html.Span:
    """The verdict on its colour, with the score when there is one."""
    colour = VERDICT_COLOURS.get(verdict, "#222")
    text = verdict if score is None else f"{verdict} ({score:.3f})"
    return html.Span(text, id=element_id,
                     style={"background": colour, "color": "white", "padding": "3px 10px",
                            "borderRadius": "4px", "fontWeight": "bold"})


def _header(redis_display_url: str) -> html.Div:
    return html.Div([
        html.H2("Deepfake detector — live console", style={"margin": "4px 0"}),
        html.Div(f"Redis {redis_display_url}", style={"color": "#666", "fontSize": "13px"}),
    ], style={"marginBottom": "8px"})


def _live_section() -> html.Div:
    return html.Div([
        html.H3("Live streams", style={"marginTop": 0}),
        html.Div(id="streams-table", children=stream_table([])),
        html.Div([
            html.Div([
                html.Div([html.Span("Stream: ", style={"marginRight": "6px"}),
                          dcc.RadioItems(id="stream-select", options=[], value=None, inline=True,
                                         inputStyle={"marginRight": "4px"},
                                         labelStyle={"marginRight": "14px"})],
                         style={"display": "flex", "alignItems": "center", "margin": "10px 0"}),
                dcc.Graph(id="history-chart", figure=placeholder_figure("select a stream"),
                          config={"displaylogo": False}),
                html.Div("Click a point to see why that frame scored as it did (file streams).",
                         style={"color": "#666", "fontSize": "13px"}),
                dcc.Loading(html.Div(id="frame-why-panel", style={"marginTop": "6px"}), type="dot"),
            ], style={"flex": "3", "minWidth": "0"}),
            html.Div([
                html.H4("Latest scored frame", style={"margin": "10px 0 6px"}),
                html.Div(id="thumbnail-panel", children=html.Div(
                    "no stream selected", style={"color": "#777"})),
            ], style={"flex": "2", "minWidth": "0", "paddingLeft": "16px"}),
        ], id="stream-detail", style=DETAIL_HIDDEN),
    ], id="live-section", style=SECTION_STYLE)


def _control_section() -> html.Div:
    return html.Div([
        html.H3("Attach / detach", style={"marginTop": 0}),
        html.Div([
            dcc.Input(id="attach-url", type="text", debounce=False,
                      placeholder="file path, rtsp://user:pass@host/path or webcam index (0)",
                      style={**INPUT_STYLE, "flex": "4", "minWidth": "0"}),
            dcc.Input(id="attach-id", type="text", placeholder="stream id (optional)",
                      style={**INPUT_STYLE, "flex": "1.3", "minWidth": "0"}),
            dcc.Input(id="attach-stride", type="number", min=1, step=1, placeholder="stride",
                      style={**INPUT_STYLE, "flex": "0 0 90px", "minWidth": "0"}),
            html.Button("Attach", id="attach-button", n_clicks=0, style=BUTTON_STYLE),
            html.Button("Detach", id="detach-button", n_clicks=0, style=BUTTON_STYLE),
        ], style={"display": "flex", "alignItems": "center", "gap": "8px"}),
        html.Div("Detach uses the stream id field. Requests go to the running service through "
                 "the Redis control channel; credentials in URLs are never shown back.",
                 style={"color": "#666", "fontSize": "13px", "marginTop": "6px"}),
        dcc.Loading(html.Div(id="control-reply", style={"marginTop": "8px"}), type="dot"),
    ], id="control-section", style=SECTION_STYLE)


def _upload_section(max_upload_mb: float) -> html.Div:
    return html.Div([
        html.H3("Upload a video or image", style={"marginTop": 0}),
        dcc.Upload(id="upload", multiple=False, children=html.Div([
            "Drop a video (.mp4 .mov .webm .mkv .avi) or an image (.jpg .png .webp .bmp) here, or ",
            html.A("choose a file", style={"textDecoration": "underline", "cursor": "pointer"}),
            f" — at most {max_upload_mb:g} MB.",
        ]), style={"border": "2px dashed #aaa", "borderRadius": "6px", "padding": "18px",
                   "textAlign": "center", "color": "#555"}),
        dcc.Loading(html.Div(id="upload-result", style={"marginTop": "10px"}), type="circle"),
    ], id="upload-section", style=SECTION_STYLE)


def build_layout(redis_display_url: str, max_upload_mb: float,
                 refresh_interval_ms: int = REFRESH_INTERVAL_MS) -> html.Div:
    """The whole page. Live parts refresh from Redis every ``refresh_interval_ms``."""
    return html.Div([
        _header(redis_display_url),
        html.Div("connecting to Redis…", id="connection-banner", style=BANNER_OK),
        _live_section(),
        _control_section(),
        _upload_section(max_upload_mb),
        dcc.Interval(id="refresh", interval=refresh_interval_ms, n_intervals=0),
        dcc.Store(id="table-signature"),
        dcc.Store(id="history-signature"),
        dcc.Store(id="thumbnail-signature"),
        dcc.Store(id="upload-payload"),
    ], style=PAGE_STYLE)


def error_view(message: str, element_id: str = "upload-error") -> html.Div:
    """A refused upload's one-sentence reason."""
    return html.Div(message, id=element_id, className="error", style=ERROR_STYLE)


def thumbnail_view(stream_id: str, jpeg: bytes | None, latest: ScoreRecord | None) -> html.Div:
    """The selected stream's latest scored frame (boxes red at/above the threshold) and facts."""
    facts = []
    if latest:
        facts = [
            html.Div(["frame ", html.B("?" if latest.frame_index is None else str(latest.frame_index)),
                      f" · {len(latest.faces)} face(s) · frame score {_score_text(latest.frame_score)}"
                      f" · rolling {_score_text(latest.rolling_score)}"]),
            html.Div(["verdict ", verdict_badge(latest.verdict,
                                                latest.rolling_score, "latest-verdict")],
                     style={"marginTop": "6px"}),
        ]
    if jpeg is None:
        picture = html.Div(f"{stream_id}: no thumbnail yet (workers publish one every "
                           "dashboard.thumbnail_interval_s)", style={"color": "#777"})
    else:
        picture = html.Img(id="thumbnail-image", src=image_data_uri(jpeg), alt=f"{stream_id} latest frame",
                           style={"maxWidth": "100%", "borderRadius": "4px", "border": "1px solid #ccc"})
    return html.Div([picture, html.Div(facts, style={"marginTop": "8px", "fontSize": "14px"})])


def upload_result_view(result: UploadResult, figure: go.Figure,
                       explanations: Sequence[tuple[FaceCrop, np.ndarray]],
                       model_note: str | None) -> html.Div:
    """Verdict, per-frame chart, the crops that drove the score and their Grad-CAM maps.

    Args:
        result: an :class:`~detector.upload_result.UploadResult`.
        figure: its per-frame chart.
        explanations: ``(face crop, heat-map overlay RGB)`` for the most suspicious crops.
        model_note: a warning about the model (an untrained test model), or None.
    """
    frames_text = ("1 image" if result.kind == "image"
                   else f"{len(result.frame_indices)} sampled frames")
    summary = html.Div([
        html.Span(f"{result.filename}: ", style={"fontWeight": "bold"}),
        verdict_badge(result.verdict, result.score, "upload-verdict"),
        html.Span(f"  {frames_text}, {result.faces_found} with a face · threshold "
                  f"{result.threshold:.2f}", style={"marginLeft": "8px", "color": "#555"}),
    ])
    parts = [summary]
    if model_note:
        parts.append(html.Div(model_note, style={"color": "#8a5a00", "fontSize": "13px",
                                                 "marginTop": "4px"}))
    parts.append(dcc.Graph(id="upload-chart", figure=figure, config={"displaylogo": False}))
    crop_tiles = [
        html.Figure([
            html.Img(src=image_data_uri(crop.crop_rgb), className="face-crop",
                     style={"width": "112px", "height": "112px", "imageRendering": "auto"}),
            html.Figcaption(f"frame {crop.frame_index}: {crop.fake_probability:.3f}",
                            style={"fontSize": "12px", "textAlign": "center"}),
        ], style={"margin": "4px"})
        for crop in result.crops
    ]
    parts.append(html.H4("Face crops that drove the score", style={"marginBottom": "4px"}))
    parts.append(html.Div(crop_tiles or [html.Div("no face found", style={"color": "#777"})],
                          id="upload-crops", style={"display": "flex", "flexWrap": "wrap"}))
    if explanations:
        parts.append(why_view(explanations, "upload-why"))
    return html.Div(parts, id="upload-report")


def why_view(explanations: Sequence[tuple[FaceCrop, np.ndarray]], element_id: str) -> html.Div:
    """Grad-CAM tiles: each face crop beside its heat map, with its fake probability."""
    tiles = [
        html.Div([
            html.Img(src=image_data_uri(crop.crop_rgb), style={"width": "160px", "height": "160px"}),
            html.Img(src=image_data_uri(overlay_rgb), className="gradcam",
                     style={"width": "160px", "height": "160px", "marginLeft": "4px"}),
            html.Div(f"frame {crop.frame_index}: fake probability {crop.fake_probability:.3f}",
                     style={"fontSize": "12px"}),
        ], style={"margin": "4px 12px 4px 0"})
        for crop, overlay_rgb in explanations
    ]
    return html.Div([
        html.H4("Why: Grad-CAM over the face", style={"marginBottom": "4px"}),
        html.Div("Red regions pushed the fake probability up the most (gradients of the score "
                 "through the last convolutional layer).", style={"color": "#666", "fontSize": "13px"}),
        html.Div(tiles, style={"display": "flex", "flexWrap": "wrap"}),
    ], id=element_id)


def frame_why_view(stream_id: str, result: UploadResult,
                   explanations: Sequence[tuple[FaceCrop, np.ndarray]],
                   origin: str = "scored again from its file") -> html.Div:
    """"Why" for one frame of a stream; ``origin`` says where the frame came from."""
    index = result.frame_indices[0]
    if not explanations:
        return html.Div(f"{stream_id} frame {index} ({origin}): no face found", id="frame-why",
                        style={"color": "#777"})
    return html.Div([
        html.Div([f"{stream_id} frame {index}, {origin}: ",
                  verdict_badge(result.verdict, result.score, "frame-why-verdict")]),
        why_view(explanations, "frame-why-tiles"),
    ], id="frame-why")
