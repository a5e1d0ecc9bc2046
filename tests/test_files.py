"""Atomic outputs: a file appears whole or not at all, with the usual permissions."""

from __future__ import annotations

import os

import pytest

from fl_runtime.errors import BadInput, OutputExists
from fl_runtime.files import (
    atomic_path,
    empty_output_folder,
    publish_folder,
    refuse_existing,
    staging_folder,
    write_text_atomic,
)


def test_a_block_that_fails_leaves_neither_target_nor_temporary(tmp_path):
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "model.joblib") as temporary:
        temporary.write_text("half")
        raise RuntimeError("crash while writing")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_rewrite_keeps_the_previous_version(tmp_path):
    write_text_atomic(tmp_path / "metrics.json", "old")
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "metrics.json") as temporary:
        temporary.write_text("new but incomplete")
        raise RuntimeError
    assert (tmp_path / "metrics.json").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_written_files_get_the_umask_mode_not_0600(tmp_path):
    previous = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "report.md", "# report")
    finally:
        os.umask(previous)
    assert (tmp_path / "report.md").stat().st_mode & 0o777 == 0o644


def test_publishing_moves_every_staged_file_and_removes_the_staging_folder(tmp_path):
    staging = tmp_path / ".out.partial"
    staging.mkdir()
    (staging / "a.txt").write_text("a")
    (staging / "b.txt").write_text("b")
    publish_folder(staging, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.txt", "b.txt"]
    assert not staging.exists()


def test_refusing_to_overwrite_names_the_existing_file(tmp_path):
    (tmp_path / "test.csv").write_text("x")
    refuse_existing([tmp_path / "other.csv"], "hint")
    with pytest.raises(OutputExists, match=r"test.csv: already exists \(choose another --out\)"):
        refuse_existing([tmp_path / "other.csv", tmp_path / "test.csv"], "choose another --out")


def test_an_output_folder_must_be_new_or_empty_and_is_staged_beside_itself(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert empty_output_folder(tmp_path / "new") == tmp_path / "new"
    (tmp_path / "empty").mkdir()
    assert empty_output_folder(tmp_path / "empty") == tmp_path / "empty"
    assert empty_output_folder(tmp_path / "relative" / ".." / "new") == tmp_path / "new"  # absolute, normalised
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "model.joblib").write_text("x")
    (tmp_path / "a-file").write_text("x")
    for taken in ("full", "a-file"):
        with pytest.raises(OutputExists, match=f"{taken}: already exists and is not empty; choose another --out"):
            empty_output_folder(tmp_path / taken)
    assert issubclass(OutputExists, BadInput)  # the command line exits 2 for it
    assert staging_folder(tmp_path / "runs" / "cms") == tmp_path / "runs" / ".cms.partial"
