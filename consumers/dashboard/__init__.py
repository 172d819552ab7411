"""The Plotly Dash dashboard: live per-stream scores from Redis, attach/detach, uploads, Grad-CAM."""

from consumers.dashboard.app import create_app, run_dashboard

__all__ = ["create_app", "run_dashboard"]
