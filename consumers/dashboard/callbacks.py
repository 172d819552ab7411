"""Dash callbacks: poll Redis for the live views, drive the control channel, score uploads."""

from __future__ import annotations

import hashlib
import json
import logging

import dash
import redis
from dash import Input, Output, State, html
from dash.exceptions import PreventUpdate

from consumers.dashboard import layout
from consumers.dashboard.control_form import attach_target, default_stream_id, mask_in_text
from consumers.dashboard.figures import history_figure, placeholder_figure, upload_figure
from consumers.dashboard.frame_why import clicked_frame_index, decode_kept_frame
from consumers.dashboard.redis_reader import DashboardReader
from consumers.dashboard.services import DashboardServices
from detector.errors import DetectorError, ModelError, RedisUnavailableError, SourceError
from detector.url_mask import mask_url

log = logging.getLogger(__name__)

HISTORY_POINTS = 2000
EXPLAINED_CROPS = 3


def _status_banner(reader: DashboardReader, beat: dict | None) -> str:
    service = (f"service running (pid {beat.get('pid', '?')})" if beat
               else "no service running: attach needs `deepfake-detector run`")
    return f"Connected to Redis {reader.display_url} · {service}"


def register_callbacks(app: dash.Dash, reader: DashboardReader,
                       services: DashboardServices) -> None:
    """Wire every callback of :func:`consumers.dashboard.layout.build_layout`'s page."""
    uploads = services.uploads

    @app.callback(
        Output("connection-banner", "children"), Output("connection-banner", "style"),
        Output("streams-table", "children"), Output("stream-select", "options"),
        Output("stream-select", "value"), Output("stream-detail", "style"),
        Output("table-signature", "data"),
        Input("refresh", "n_intervals"),
        State("stream-select", "value"), State("table-signature", "data"),
    )
    def refresh_streams(_n, selected, signature):
        try:
            streams = reader.streams()
            beat = reader.service()
        except RedisUnavailableError:
            banner = (f"Disconnected: cannot reach Redis at {reader.display_url}; retrying. "
                      "The last known state is shown below.")
            new_signature = "disconnected"
            if signature == new_signature:
                raise PreventUpdate from None
            return (banner, layout.BANNER_DOWN, dash.no_update, dash.no_update, dash.no_update,
                    dash.no_update, new_signature)
        rows = layout.stream_table_rows(streams)
        ids = [s.stream_id for s in streams]
        if selected not in ids:
            # Open on the stream with the latest scores, not the first name alphabetically.
            selected = max(streams, key=lambda s: s.activity_key).stream_id if streams else None
        banner = _status_banner(reader, beat)
        new_signature = json.dumps([banner, rows, selected])
        if signature == new_signature:
            raise PreventUpdate
        options = [{"label": stream_id, "value": stream_id} for stream_id in ids]
        detail_style = layout.DETAIL_SHOWN if ids else layout.DETAIL_HIDDEN
        return (banner, layout.BANNER_OK, layout.stream_table(rows), options, selected,
                detail_style, new_signature)

    @app.callback(
        Output("history-chart", "figure"), Output("history-signature", "data"),
        Input("refresh", "n_intervals"), Input("stream-select", "value"),
        State("history-signature", "data"),
    )
    def refresh_history(_n, stream_id, signature):
        if not stream_id:
            if signature == "none":
                raise PreventUpdate
            return placeholder_figure("no stream selected"), "none"
        try:
            last_id = reader.last_history_id(stream_id)
            new_signature = f"{stream_id}|{last_id}"
            if signature == new_signature:
                raise PreventUpdate
            points = reader.history(stream_id, HISTORY_POINTS)
            latest = reader.latest(stream_id)
        except RedisUnavailableError:
            raise PreventUpdate from None   # keep the last chart; the banner says why
        threshold = latest.threshold if latest else None
        return history_figure(stream_id, points, threshold), new_signature

    @app.callback(
        Output("thumbnail-panel", "children"), Output("thumbnail-signature", "data"),
        Input("refresh", "n_intervals"), Input("stream-select", "value"),
        State("thumbnail-signature", "data"),
    )
    def refresh_thumbnail(_n, stream_id, signature):
        if not stream_id:
            if signature == "none":
                raise PreventUpdate
            return html.Div("no stream selected", style={"color": "#777"}), "none"
        try:
            jpeg = reader.thumbnail(stream_id)
            latest = reader.latest(stream_id)
        except RedisUnavailableError:
            raise PreventUpdate from None
        digest = hashlib.sha1(jpeg).hexdigest() if jpeg else "-"
        new_signature = f"{stream_id}|{digest}|{latest.frame_index if latest else None}"
        if signature == new_signature:
            raise PreventUpdate
        return layout.thumbnail_view(stream_id, jpeg, latest), new_signature

    @app.callback(
        Output("frame-why-panel", "children"),
        Input("history-chart", "clickData"), State("stream-select", "value"),
        prevent_initial_call=True,
    )
    def explain_clicked_frame(click_data, stream_id):
        frame_index = clicked_frame_index(click_data)
        if frame_index is None or not stream_id:
            raise PreventUpdate
        try:
            status = next((s for s in reader.streams() if s.stream_id == stream_id), None)
            if status is not None and status.kind == "file":
                frame_bgr = services.read_frame(status.source, frame_index)
                origin = "scored again from its file"
            else:
                kept = reader.kept_frame(stream_id)
                if kept is None:
                    return html.Div(f"{stream_id} has no kept frame yet: a live stream keeps only "
                                    "its latest thumbnail frame (dashboard.keep_live_frame).",
                                    id="frame-why", style={"color": "#777"})
                frame_index, frame_bgr = kept[0], decode_kept_frame(kept[1])
                origin = "the live stream's latest kept frame, scored again"
            result = uploads.score_frame(stream_id, frame_index, frame_bgr)
            explanations = uploads.explain(result.crops[:EXPLAINED_CROPS])
        except DetectorError as exc:   # Redis gone, file unreadable here, model missing
            return layout.error_view(str(exc), "frame-why-error")
        return layout.frame_why_view(stream_id, result, explanations, origin)

    @app.callback(
        Output("control-reply", "children"), Output("attach-url", "value"),
        Input("attach-button", "n_clicks"), Input("detach-button", "n_clicks"),
        State("attach-url", "value"), State("attach-id", "value"), State("attach-stride", "value"),
        prevent_initial_call=True,
    )
    def control(_attach_clicks, _detach_clicks, url_text, stream_id, stride):
        op = "attach" if dash.ctx.triggered_id == "attach-button" else "detach"
        stream_id = (stream_id or "").strip()
        target = None
        try:
            if op == "attach":
                target = attach_target(url_text or "")
                stream_id = stream_id or default_stream_id(target)
                stride = int(stride) if stride else None
            elif not stream_id:
                raise ValueError("enter the stream id to detach")
            reply = services.send_control(op, stream_id, target, stride)
            ok, message = bool(reply.get("ok")), str(reply.get("message", ""))
        except (ValueError, DetectorError) as exc:
            ok, message = False, str(exc)
        except (redis.RedisError, OSError) as exc:
            ok, message = False, f"cannot reach Redis at {reader.display_url}: {exc}"
        if target is not None:
            message = mask_in_text(message, target)
            log.info("dashboard %s %s (%s): %s", op, stream_id, mask_url(target), message)
        view = html.Div(f"{op} {stream_id or ''}: {message}", id="control-message",
                        style={"color": "#225522" if ok else "#8a1c1c"})
        # A sent URL leaves the form so that no password stays on the page.
        return view, ("" if ok and op == "attach" else dash.no_update)

    # The size is checked in the browser, so an oversize file is never sent to the server.
    app.clientside_callback(
        """
        function(contents, filename) {
            if (!contents) { return window.dash_clientside.no_update; }
            var size = Math.floor((contents.length - contents.indexOf(",") - 1) * 3 / 4);
            if (size > MAX_BYTES) { return {filename: filename, size_bytes: size}; }
            return {filename: filename, contents: contents};
        }
        """.replace("MAX_BYTES", str(int(uploads.max_bytes))),
        Output("upload-payload", "data"),
        Input("upload", "contents"), State("upload", "filename"),
        prevent_initial_call=True,
    )

    @app.callback(
        Output("upload-result", "children"),
        Input("upload-payload", "data"),
        prevent_initial_call=True,
    )
    def score_upload(payload):
        filename = (payload or {}).get("filename")
        if payload and payload.get("contents") is None and payload.get("size_bytes"):
            return layout.error_view(uploads.too_big_message(filename or "the file",
                                                             int(payload["size_bytes"])))
        try:
            result = uploads.score(filename, (payload or {}).get("contents"))
            explanations = uploads.explain(result.crops[:EXPLAINED_CROPS])
        except SourceError as exc:
            return layout.error_view(str(exc))
        except ModelError as exc:
            return layout.error_view(f"the model could not be loaded: {exc}")
        except DetectorError as exc:
            return layout.error_view(str(exc))
        except Exception as exc:  # the page must say what happened, not hang
            log.exception("scoring the upload %s failed", filename)
            return layout.error_view(f"scoring {filename} failed: {exc.__class__.__name__}: {exc}")
        card = uploads.card()
        note = None if card.trained else (
            f"model {card.name} {card.version} is marked trained = false (random weights): "
            "its scores mean nothing")
        figure = upload_figure(result.filename, result.frame_indices, result.frame_scores,
                               result.threshold)
        return layout.upload_result_view(result, figure, explanations, note)

