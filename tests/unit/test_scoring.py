import pytest

from detector.scoring import (
    FAILED,
    FAKE,
    NO_FACE,
    PENDING,
    REAL,
    RollingScore,
    aggregate_video,
    decision_threshold,
    frame_score,
    stream_verdict,
    unscored_verdict,
    verdict,
)
from detector.stream_status import StreamStatus


@pytest.mark.parametrize("probabilities,expected", [([], None), ([0.2], 0.2), ([0.1, 0.9, 0.4], 0.9)])
def test_frame_score_is_the_most_suspicious_face(probabilities, expected):
    assert frame_score(probabilities) == expected


@pytest.mark.parametrize("score,expected", [(None, NO_FACE), (0.0, REAL), (0.499, REAL), (0.5, FAKE), (1.0, FAKE)])
def test_verdict_at_threshold(score, expected):
    assert verdict(score, 0.5) == expected


def test_no_face_is_none_never_a_number():
    assert aggregate_video([None, None]) is None
    assert aggregate_video([]) is None
    assert aggregate_video([None, 0.2, 0.4]) == pytest.approx(0.3)


def test_rolling_score_covers_the_latest_window_by_index():
    rolling = RollingScore(window=3)
    assert rolling.add(0, 0.9) == pytest.approx(0.9)
    assert rolling.add(4, None) == pytest.approx(0.9)
    assert rolling.add(8, 0.3) == pytest.approx(0.6)
    # frame 12 pushes frame 0 out of the window
    assert rolling.add(12, 0.1) == pytest.approx(0.2)
    # a late result older than the window changes nothing
    assert rolling.add(2, 1.0) == pytest.approx(0.2)


def test_rolling_score_is_order_independent():
    scores = {0: 0.1, 4: 0.5, 8: 0.9, 12: None, 16: 0.3}
    forward, backward = RollingScore(3), RollingScore(3)
    for i in sorted(scores):
        forward.add(i, scores[i])
    for i in sorted(scores, reverse=True):
        backward.add(i, scores[i])
    assert forward.value() == pytest.approx(backward.value()) == pytest.approx(0.6)


def test_rolling_window_of_only_faceless_frames_is_none():
    rolling = RollingScore(2)
    rolling.add(0, 0.8)
    rolling.add(4, None)
    assert rolling.add(8, None) is None


def test_rolling_window_must_be_positive():
    with pytest.raises(ValueError):
        RollingScore(0)


def test_a_model_returning_nan_is_an_error_not_a_score():
    import numpy as np

    from detector.errors import ModelError
    from detector.frame_scorer import FrameScorer

    class NanRuntime:
        name = "nan"

        def predict(self, batch):
            return np.full((len(batch),), np.nan, dtype=np.float32)

    class Card:
        name = "c"

        def normalise(self, crops):
            return crops.astype(np.float32)

    scorer = FrameScorer(Card(), detector=None, runtime=NanRuntime())
    with pytest.raises(ModelError, match="non-finite"):
        scorer.classify(np.zeros((2, 8, 8, 3), np.uint8))


@pytest.mark.parametrize("score,frames_scored,status,expected", [
    (None, 0, "connecting", PENDING),
    (None, 0, "reconnecting", PENDING),
    (None, 0, "failed", FAILED),
    (None, 0, "finished", PENDING),
    (None, 5, "running", NO_FACE),     # frames seen, none with a face: an answer
    (None, 5, "failed", NO_FACE),
    (0.7, 5, "running", FAKE),
    (0.2, 1, "stopped", REAL),
])
def test_a_stream_without_scored_frames_is_pending_or_failed(score, frames_scored, status, expected):
    assert stream_verdict(score, frames_scored, status, 0.5) == expected


@pytest.mark.parametrize("configured, card, expected", [
    (None, 0.4, 0.4),     # no scoring.threshold: the card's
    (0.7, 0.4, 0.7),      # scoring.threshold set: it wins
    (0.4, 0.4, 0.4),
])
def test_decision_threshold_is_the_configured_one_else_the_cards(configured, card, expected):
    assert decision_threshold(configured, card) == expected


@pytest.mark.parametrize("status, expected", [
    (StreamStatus.FAILED, FAILED),
    ("failed", FAILED),              # a status read back from Redis is a plain string
    (StreamStatus.RECONNECTING, PENDING),
    ("finished", PENDING),
    ("", PENDING),
    ("FAILED", PENDING),             # statuses are lower case; the verdict's name is not one
])
def test_unscored_verdict_is_failed_only_for_a_failed_stream(status, expected):
    assert unscored_verdict(status) == expected
