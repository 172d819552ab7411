"""Output paths named on the command line: checked before the work, never lost after it."""

import logging

import pytest

from app.outputs import check_distinct, check_output_path, write_output
from detector.errors import ConfigError


@pytest.mark.parametrize("name,create,message", [
    ("missing/r.json", False, "folder {tmp}/missing does not exist"),
    ("file/r.json", False, "{tmp}/file is not a folder"),
    ("file/sub/r.json", True, "cannot create folder {tmp}/file/sub"),
    (".", False, "is a folder"),
])
def test_unusable_output_paths_are_one_sentence(tmp_path, name, create, message):
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError) as error:
        check_output_path(tmp_path / name, "--report", create_folder=create)
    assert message.format(tmp=tmp_path) in str(error.value)
    assert str(error.value).startswith("--report ")


@pytest.mark.parametrize("name,create", [("r.json", False), ("new/r.json", True)])
def test_usable_output_paths_pass(tmp_path, name, create):
    assert check_output_path(tmp_path / name, "--csv", create_folder=create) == tmp_path / name
    assert (tmp_path / name).parent.is_dir()


def test_two_flags_naming_one_file_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="--report and --csv both name"):
        check_distinct({"--report": tmp_path / "a", "--csv": tmp_path / "a", "--x": None})
    check_distinct({"--report": tmp_path / "a", "--csv": tmp_path / "b", "--x": None})


def test_a_write_that_fails_goes_to_a_named_fallback_file(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    gone = tmp_path / "gone" / "r.json"
    with caplog.at_level(logging.ERROR):
        written = write_output(gone, '{"files": []}\n', "report")
    assert written.parent == tmp_path and written.name.startswith("deepfake-report-")
    assert written.suffix == ".json" and written.read_text() == '{"files": []}\n'
    assert f"could not write the report to {gone}" in caplog.text and str(written) in caplog.text
    assert write_output(tmp_path / "ok.csv", "a\n", "CSV") == tmp_path / "ok.csv"
