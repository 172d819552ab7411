"""Which pool endpoints other hosts can reach, and the refusal without keys."""

import pytest

from detector.curve import check_exposure, is_loopback_endpoint
from detector.errors import ConfigError


@pytest.mark.parametrize("endpoint, is_loopback", [
    ("ipc:///tmp/x/frames", True), ("tcp://127.0.0.1:5555", True), ("tcp://127.1.2.3:5555", True),
    ("tcp://localhost:5555", True), ("tcp://[::1]:5555", True),
    ("tcp://0.0.0.0:5555", False), ("tcp://*:5555", False), ("tcp://192.168.1.4:5555", False),
    ("tcp://eth0:5555", False), ("tcp://service.lan:5555", False), ("tcp://[::]:5555", False),
])
def test_is_loopback_endpoint(endpoint, is_loopback):
    assert is_loopback_endpoint(endpoint) is is_loopback


@pytest.mark.parametrize("has_keys, insecure, refused", [
    (False, False, True), (True, False, False), (False, True, False), (True, True, False),
])
def test_check_exposure(has_keys, insecure, refused):
    endpoints = [("pool.frames_endpoint", "tcp://0.0.0.0:5555")]
    if refused:
        with pytest.raises(ConfigError, match="pool.frames_endpoint = 'tcp://0.0.0.0:5555'"):
            check_exposure(endpoints, has_keys, insecure)
    else:
        check_exposure(endpoints, has_keys, insecure)


def test_loopback_needs_no_keys():
    check_exposure([("pool.frames_endpoint", "tcp://127.0.0.1:5555")], has_keys=False, insecure=False)
