"""Core of the streaming deepfake detector: messages, config, faces, model, scoring, Redis sink."""

__version__ = "0.1.0"
