"""The project's error hierarchy: one base class, one subclass per boundary."""


class DetectorError(Exception):
    """Base class for errors a user can act on; the message is one plain sentence."""


class ConfigError(DetectorError):
    """A config file, config value or command-line option is invalid."""


class SourceError(DetectorError):
    """A video source cannot be opened or read (missing file, not a video, bad URL)."""


class WireFormatError(DetectorError):
    """A message on the wire is malformed, truncated or of an unknown schema version."""


class ModelError(DetectorError):
    """A model card or its weights are missing or inconsistent."""


class RedisUnavailableError(DetectorError):
    """Redis cannot be reached or the embedded redis-server cannot be started."""


class TrainingDataError(DetectorError):
    """`prepare` / `train` cannot go on: data or face cache missing, or bad training settings."""
