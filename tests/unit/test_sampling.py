import pytest

from detector.sampling import DEFAULT_STRIDE, is_sampled, sampled_count, sampled_indices, spread_evenly


@pytest.mark.parametrize("index,stride,expected", [
    (0, 4, True), (1, 4, False), (3, 4, False), (4, 4, True), (8, 4, True), (5, 1, True),
])
def test_every_stride_th_frame_is_sampled(index, stride, expected):
    assert is_sampled(index, stride) is expected


@pytest.mark.parametrize("index,stride", [(0, 0), (3, -1), (-1, 4)])
def test_bad_sampling_arguments_raise(index, stride):
    with pytest.raises(ValueError):
        is_sampled(index, stride)


@pytest.mark.parametrize("total,stride,expected",
                         [(0, 4, 0), (1, 4, 1), (4, 4, 1), (5, 4, 2), (42, 4, 11), (30, 1, 30)])
def test_sampled_count_matches_is_sampled(total, stride, expected):
    assert sampled_count(total, stride) == expected == sum(is_sampled(i, stride) for i in range(total))


@pytest.mark.parametrize("n,cap,expected", [
    (0, 3, []), (2, 3, [0, 1]), (10, 1, [0]), (10, 2, [0, 9]), (9, 3, [0, 4, 8]),
])
def test_spread_evenly(n, cap, expected):
    assert spread_evenly(list(range(n)), cap) == expected


@pytest.mark.parametrize("total, stride, max_count, expected", [
    (0, 4, None, []), (10, 4, None, [0, 4, 8]), (10, 4, 2, [0, 8]), (10, 1, 3, [0, 4, 9]),
    (-3, 2, None, []),
])
def test_sampled_indices_are_is_sampled_then_spread(total, stride, max_count, expected):
    assert sampled_indices(total, stride, max_count) == expected
    assert all(is_sampled(i, stride) for i in expected)


@pytest.mark.parametrize("stride, max_count", [(0, None), (4, 0)])
def test_sampled_indices_refuse_a_bad_stride_or_cap(stride, max_count):
    with pytest.raises(ValueError):
        sampled_indices(10, stride, max_count)


def test_the_default_stride_is_the_configs():
    from detector.config import Config

    assert Config().sampling.stride == DEFAULT_STRIDE == 4
