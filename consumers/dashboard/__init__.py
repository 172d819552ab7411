"""The Plotly Dash dashboard: live per-stream scores from Redis, attach/detach, uploads, Grad-CAM.

It reads Redis; app/dashboard.py hands it upload scoring, frame reading and the control client.
"""

from consumers.dashboard.app import create_app

__all__ = ["create_app"]
