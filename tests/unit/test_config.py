from pathlib import Path

import pytest

from detector.config import Config, config_from_dict, load_config, with_overrides
from detector.errors import ConfigError
from detector.url_mask import mask_url


@pytest.mark.parametrize("runtime", ["auto", "keras", "litert", "litert-int8", "openvino-bf16"])
def test_every_runtime_kind_is_a_valid_workers_runtime(runtime):
    assert config_from_dict({"workers": {"runtime": runtime}}).workers.runtime == runtime


def test_empty_config_is_the_defaults():
    config = config_from_dict({})
    assert config.sampling.stride == 4
    assert config.workers.max_batch >= 1
    assert config.streams == ()
    assert config.workers.resolved_count() >= 1


@pytest.mark.parametrize("raw,message", [
    ({"workers": {"max_batch": 0}}, "workers.max_batch must be >= 1, got 0"),
    ({"sampling": {"stride": -2}}, "sampling.stride must be >= 1, got -2"),
    ({"sampling": {"stride": "4"}}, "sampling.stride must be an integer, got '4'"),
    ({"sampling": {"stride": True}}, "sampling.stride must be an integer, got True"),
    ({"workers": {"runtime": "onnx"}}, "workers.runtime must be one of"),
    ({"workers": {"runtime": "int8"}}, "workers.runtime must be one of"),
    ({"workers": {"bogus": 1}}, "unknown config key workers.bogus"),
    ({"bogus": {}}, "unknown config section 'bogus'"),
    ({"workers": 3}, "workers must be a table"),
    ({"redis": {"url": "http://x"}}, "redis.url must start with"),
    ({"pool": {"frames_endpoint": "inproc://x"}}, "pool.frames_endpoint must be"),
    ({"scoring": {"threshold": 1.5}}, "scoring.threshold must be < 1"),
    ({"scoring": {"threshold": 1.0}}, "scoring.threshold must be < 1"),
    ({"scoring": {"threshold": 0.0}}, "scoring.threshold must be > 0"),
    ({"sources": {"reconnect_min_s": 5.0, "reconnect_max_s": 1.0}}, "reconnect_max_s must be >="),
    ({"streams": [{"id": "a"}]}, "streams[0].url must be a non-empty string"),
    ({"streams": [{"id": "a", "url": "x.mp4"}, {"id": "a", "url": "y.mp4"}]}, "is used twice"),
    ({"streams": {"id": "a"}}, "streams must be an array of tables"),
    ({"streams": [{"id": "a", "url": "x", "fps": 3}]}, "unknown config key streams[0].fps"),
])
def test_bad_values_name_their_toml_path(raw, message):
    with pytest.raises(ConfigError) as caught:
        config_from_dict(raw)
    assert message in str(caught.value)


def test_ints_are_accepted_for_floats_and_streams_parse():
    config = config_from_dict({"workers": {"max_wait_ms": 10},
                               "streams": [{"id": "door", "url": "rtsp://cam/1", "stride": 2}]})
    assert config.workers.max_wait_ms == 10.0
    assert config.streams[0].id == "door" and config.streams[0].stride == 2


def test_load_config_reads_toml_and_resolves_paths(tmp_path: Path):
    path = tmp_path / "config.toml"
    path.write_text('[model]\nname = "x"\ndir = "weights"\n', encoding="utf-8")
    config = load_config(path)
    assert config.model.name == "x"
    assert config.resolve_path(config.model.dir) == tmp_path / "weights"


@pytest.mark.parametrize("content,message", [("[workers\n", "not valid TOML"), (None, "not found")])
def test_load_config_file_errors(tmp_path: Path, content, message):
    path = tmp_path / "config.toml"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_missing_default_file_gives_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_config(None) == Config()


def test_overrides_are_validated():
    config = with_overrides(Config(), workers={"count": 3})
    assert config.workers.count == 3
    with pytest.raises(ConfigError, match="workers.count must be >= 0"):
        with_overrides(Config(), workers={"count": -1})


def test_repository_config_toml_is_valid():
    load_config(Path(__file__).resolve().parents[2] / "config.toml")


@pytest.mark.parametrize("url,expected", [
    ("rtsp://user:pw@cam.local:554/s1", "rtsp://***@cam.local:554/s1"),
    ("rtsp://user@cam.local/s1", "rtsp://***@cam.local/s1"),
    ("rtsp://cam.local/s1", "rtsp://cam.local/s1"),
    ("redis://:secret@host:6379/0", "redis://***@host:6379/0"),
    ("clip.mp4", "clip.mp4"),
])
def test_mask_url_hides_credentials(url, expected):
    assert mask_url(url) == expected
    assert "pw" not in mask_url(url) and "secret" not in mask_url(url)


def test_config_to_dict_round_trips():
    from detector.config import config_to_dict

    config = config_from_dict({"workers": {"count": 3}, "streams": [{"id": "a", "url": "x.mp4", "stride": 2}]})
    assert config_from_dict(config_to_dict(config)) == config
