import numpy as np
import pytest

from detector.face_crop import crop_face, scale_to_width, square_box_xyxy


def test_square_box_grows_by_margin_around_the_centre():
    # side = 40 * 1.5 = 60 around the centre (20, 40)
    assert square_box_xyxy((10, 20, 30, 60), 0.25) == (-10, 10, 50, 70)


@pytest.mark.parametrize("box", [(5, 5, 5, 10), (5, 10, 8, 2)])
def test_degenerate_boxes_raise(box):
    with pytest.raises(ValueError):
        square_box_xyxy(box, 0.2)


def test_crop_is_rgb_of_the_requested_size_and_pads_outside_black():
    frame = np.zeros((100, 100, 3), dtype=np.uint8)
    frame[:, :, 0] = 255  # blue in BGR
    before = frame.copy()
    crop = crop_face(frame, (0, 0, 40, 40), 0.25, 32)
    assert crop.shape == (32, 32, 3) and crop.dtype == np.uint8
    assert crop[-1, -1, 2] == 255 and crop[-1, -1, 0] == 0  # BGR blue → RGB channel 2
    assert crop[0, 0].sum() == 0  # outside the frame: black
    np.testing.assert_array_equal(frame, before)  # input untouched


def test_scale_to_width_never_upscales():
    frame = np.zeros((360, 640, 3), dtype=np.uint8)
    small, factor = scale_to_width(frame, 320)
    assert small.shape == (180, 320, 3) and factor == 2.0
    same, one = scale_to_width(frame, 1280)
    assert same is frame and one == 1.0
