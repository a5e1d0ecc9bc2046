"""The FAB: exactly the Flower app and the learning task, and a content hash that names that code on any machine."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tomllib
import zipfile
import zlib
from pathlib import Path

import pytest

from fl_runtime.app.run_settings import default_run_config
from fl_runtime.errors import BundleError, DataError
from fl_runtime.launch import fab
from fl_runtime.launch.flower import tool
from tests.helpers import PROJECT, imports_of


def _module_path(name: str) -> Path:
    path = PROJECT.joinpath(*name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _imported_closure(roots: list[str]) -> set[str]:
    """Every fl_runtime module the roots import, directly or through others, lazily or not."""
    seen, pending = set(), list(roots)
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        pending += [n for n in imports_of(_module_path(name)) if n.startswith("fl_runtime") and n not in seen]
    return seen


def test_the_fab_carries_the_app_the_learning_task_and_the_base_and_nothing_else():
    names = set(fab.app_files())
    assert "pyproject.toml" in names
    packages = {name.split("/")[1] for name in names if name.count("/") >= 2}
    assert packages == {"app", "learning"}
    assert {name for name in names if name.count("/") == 1} == {f"fl_runtime/{m}" for m in fab.BASE_MODULES}
    assert not [name for name in names if name.startswith(("fl_runtime/launch/", "fl_runtime/aws/", "fl_runtime/cli"))]


def test_every_module_the_apps_import_is_in_the_fab():
    needed = _imported_closure(["fl_runtime.app.client_app", "fl_runtime.app.server_app"])
    shipped = set(fab.app_files())
    missing = sorted(n for n in needed if _module_path(n).relative_to(PROJECT).as_posix() not in shipped)
    assert missing == []
    assert "fl_runtime.learning.model" in needed and "fl_runtime.files" in needed  # the closure is followed


def test_the_fabs_pyproject_names_the_apps_and_carries_the_default_run_config():
    config = tomllib.loads(fab.pyproject_toml())
    assert config["tool"]["flwr"]["app"]["components"] == fab.COMPONENTS
    assert config["tool"]["flwr"]["app"]["config"] == default_run_config()
    assert config["project"]["name"] == fab.APP_NAME


@pytest.fixture(scope="module")
def built_by_flower(tmp_path_factory) -> bytes:
    """The FAB as Flower's own ``flwr build`` makes it from the staged app folder."""
    folder = tmp_path_factory.mktemp("fab")
    app = fab.stage_app(folder / "app")
    done = subprocess.run(
        [tool("flwr"), "build", "--app", str(app)], capture_output=True, text=True, cwd=folder, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    [built] = folder.glob("*.fab")
    return built.read_bytes()


@pytest.mark.slow
def test_the_content_hash_of_the_sources_is_the_content_hash_of_the_fab_flower_builds(built_by_flower):
    assert fab.fab_content_hash(built_by_flower) == fab.app_content_hash()


@pytest.mark.slow
def test_the_content_hash_ignores_where_the_files_lie_and_when_they_were_written(tmp_path, built_by_flower):
    first = fab.stage_app(tmp_path / "one" / "app")
    second = fab.stage_app(tmp_path / "two" / "app")
    for index, path in enumerate(sorted(second.rglob("*.py"))):
        os.utime(path, (1_000_000 + index, 1_000_000 + index))
    hashes = set()
    for folder in (first, second):
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
        hashes.add(fab.content_hash(files))
    assert hashes == {fab.app_content_hash()}
    # and on another machine: a fresh interpreter computes the same, and so does Flower's FAB of it
    probe = "from fl_runtime.launch.fab import app_content_hash; print(app_content_hash())"
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(PROJECT)},
    )
    assert done.stdout.strip() == fab.app_content_hash()


def test_one_changed_line_of_the_client_app_or_of_the_run_config_changes_the_hash():
    files = fab.app_files()
    original = fab.content_hash(files)
    changed_code = {**files, "fl_runtime/app/client_app.py": files["fl_runtime/app/client_app.py"] + b"\nMARKER = 1\n"}
    changed_config = {
        **files,
        "pyproject.toml": files["pyproject.toml"].replace(b"num-server-rounds = 10", b"num-server-rounds = 11"),
    }
    assert changed_config["pyproject.toml"] != files["pyproject.toml"]
    reformatted = {**files, "pyproject.toml": files["pyproject.toml"].replace(b" = ", b"=")}  # same TOML, other bytes
    assert len({original, fab.content_hash(changed_code), fab.content_hash(changed_config)}) == 3
    assert fab.content_hash(reformatted) == original
    assert fab.content_hash({**files, fab.FLOWER_MANIFEST: b"anything"}) == original


def test_the_code_bundle_gets_the_whole_runtime_and_a_folder_that_is_no_package_is_refused(tmp_path, monkeypatch):
    everything = fab.runtime_files()
    assert "fl_runtime/cli.py" in everything and "fl_runtime/__main__.py" in everything
    assert "fl_runtime/aws/sagemaker_client.py" in everything and "fl_runtime/launch/local.py" in everything
    (tmp_path / "fl_runtime" / "stray").mkdir(parents=True)
    monkeypatch.setattr(fab, "PACKAGE", tmp_path / "fl_runtime")
    with pytest.raises(ValueError, match="stray is not a package of fl_runtime"):
        fab.runtime_files(("stray",), ())


@pytest.mark.slow
def test_the_app_hash_command_prints_what_a_client_approves_and_the_hash_of_a_fab_file(tmp_path, built_by_flower):
    from fl_runtime.cli import main

    def printed(*argv: str) -> tuple[int, str, str]:
        done = subprocess.run(
            [sys.executable, "-m", "fl_runtime", "app-hash", *argv], capture_output=True, text=True, cwd=PROJECT
        )
        return done.returncode, done.stdout.strip(), done.stderr.strip()

    (tmp_path / "app.fab").write_bytes(built_by_flower)
    (tmp_path / "lies.fab").write_text("not a zip file")
    assert printed() == (0, fab.app_content_hash(), "")
    assert printed("--fab", str(tmp_path / "app.fab")) == (0, fab.app_content_hash(), "")
    assert printed("--fab", str(tmp_path / "lies.fab")) == (
        2,
        "",
        f"error: {tmp_path / 'lies.fab'}: not a FAB (a FAB is a zip file, as `flwr build` writes it)",
    )
    assert main(["app-hash", "--fab", str(tmp_path / "absent.fab")]) == 2


def _rezipped(fab_bytes: bytes, extra: dict[str, bytes], replace: dict[str, bytes] | None = None) -> bytes:
    """The FAB's entries, some replaced, plus ``extra`` ones, as a new zip."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(fab_bytes)) as source, zipfile.ZipFile(buffer, "w") as target:
        for info in source.infolist():
            target.writestr(info.filename, (replace or {}).get(info.filename, source.read(info)))
        for name, content in extra.items():
            target.writestr(name, content)
    return buffer.getvalue()


@pytest.mark.slow
def test_a_fab_unpacks_to_exactly_the_files_its_hash_covers_under_that_hash(tmp_path, built_by_flower):
    folder = fab.unpack_fab(built_by_flower, tmp_path / "apps")
    assert folder == tmp_path / "apps" / fab.app_content_hash()
    unpacked = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert fab.content_hash(unpacked) == fab.app_content_hash()
    assert fab.FLOWER_MANIFEST not in unpacked
    assert fab.unpack_fab(built_by_flower, tmp_path / "apps") == folder  # the same content: the same folder


@pytest.mark.slow
def test_a_manifest_naming_files_outside_the_fab_is_never_opened(tmp_path, built_by_flower):
    """Flower's installer opens and hashes every path .info/CONTENT lists; a FIFO there would block it for ever
    (and a regular file would be read and hashed for whoever wrote the manifest)."""
    import threading

    fifo = tmp_path / "blocks-whoever-opens-it"
    os.mkfifo(fifo)
    crafted = _rezipped(built_by_flower, {}, {fab.FLOWER_MANIFEST: f"{fifo},{'0' * 64},0\n".encode()})
    assert fab.fab_content_hash(crafted) == fab.app_content_hash()  # still the approved app
    done: list[Path] = []
    worker = threading.Thread(target=lambda: done.append(fab.unpack_fab(crafted, tmp_path / "apps")), daemon=True)
    worker.start()
    worker.join(timeout=30)
    assert done == [tmp_path / "apps" / fab.app_content_hash()]


@pytest.mark.parametrize("name", ["../outside.py", "/absolute.py", "fl_runtime//app/x.py", "./x.py", "a\\b.py"])
def test_a_fab_entry_that_is_not_a_plain_relative_path_is_refused(tmp_path, name):
    from fl_runtime.errors import BundleError

    crafted = _rezipped(_zip(fab.app_files()), {name: b"print('escaped')\n"})
    with pytest.raises(BundleError, match="not a plain relative path"):
        fab.unpack_fab(crafted, tmp_path / "apps")
    assert not (tmp_path / "outside.py").exists() and not (tmp_path / "apps").exists()


def test_a_fab_naming_one_file_twice_is_refused(tmp_path):
    from fl_runtime.errors import BundleError

    files = fab.app_files()
    with pytest.warns(UserWarning, match="Duplicate name"):
        crafted = _rezipped(_zip(files), {"fl_runtime/app/client_app.py": b"MARKER = 1\n"})
    with pytest.raises(BundleError, match="two entries of the same name"):
        fab.unpack_fab(crafted, tmp_path / "apps")


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


# --- reading a FAB before approving it: bounded, streamed -------------------------------------------------------------


@pytest.fixture
def inflated(monkeypatch) -> list[int]:
    """Every byte the hash inflates through ``ZipFile.open``, counted: ``[total]``."""
    total = [0]
    original = zipfile.ZipFile.open

    def counting_open(self, name, *args, **kwargs):
        stream = original(self, name, *args, **kwargs)
        read = stream.read

        def counted(size=-1):
            data = read(size)
            total[0] += len(data)
            return data

        stream.read = counted  # type: ignore[method-assign]
        return stream

    monkeypatch.setattr(zipfile.ZipFile, "open", counting_open)
    return total


def _bomb(entries: dict[str, int]) -> bytes:
    """A FAB whose entries are this many zero bytes each, deflated: a few bytes per KiB."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, size in entries.items():
            with archive.open(name, "w", force_zip64=True) as entry:
                for start in range(0, size, fab.CHUNK_BYTES):
                    entry.write(bytes(min(fab.CHUNK_BYTES, size - start)))
    return buffer.getvalue()


def _whole_read_hash(fab_bytes: bytes) -> str:
    """The content hash as computed before it was streamed: every entry read whole."""
    with zipfile.ZipFile(io.BytesIO(fab_bytes)) as archive:
        return fab.content_hash({i.filename: archive.read(i) for i in archive.infolist() if not i.is_dir()})


def test_the_real_app_hashes_as_it_did_when_every_entry_was_read_whole():
    files = fab.app_files()
    with pytest.warns(UserWarning, match="Duplicate name"):  # the last of two same-named entries counts, as before
        crafted = _rezipped(_zip(files), {"fl_runtime/app/client_app.py": b"MARKER = 1\n"})
    as_flower_packs_it = _rezipped(_zip(files), {fab.FLOWER_MANIFEST: b"whatever it lists", "fl_runtime/extra/": b""})
    assert fab.fab_content_hash(as_flower_packs_it) == fab.app_content_hash() == _whole_read_hash(as_flower_packs_it)
    assert fab.fab_content_hash(crafted) == _whole_read_hash(crafted) != fab.app_content_hash()
    assert sum(len(content) for content in files.values()) < fab.MAX_FAB_BYTES // 64  # the limits leave room
    assert len(files) < fab.MAX_FAB_ENTRIES // 10 and len(files[fab.PYPROJECT]) < fab.MAX_PYPROJECT_BYTES // 10


@pytest.mark.slow
def test_the_fab_flower_builds_hashes_as_it_did_when_every_entry_was_read_whole(built_by_flower):
    assert fab.fab_content_hash(built_by_flower) == _whole_read_hash(built_by_flower) == fab.app_content_hash()


def test_a_zip_bomb_is_refused_by_its_declared_size_before_a_byte_is_inflated(inflated):
    half = fab.MAX_FAB_BYTES // 2
    bomb = _bomb({"fl_runtime/app/a.py": half, "fl_runtime/app/b.py": half + 1})
    assert len(bomb) < fab.MAX_FAB_BYTES // 256  # small to send, 64 MiB once inflated
    with pytest.raises(BundleError) as refused:
        fab.fab_content_hash(bomb)
    assert str(refused.value) == (
        f"the FAB declares {fab.MAX_FAB_BYTES + 1} bytes inflated, more than a client reads of an app before "
        f"approving it ({fab.MAX_FAB_BYTES} bytes, fab.MAX_FAB_BYTES)"
    )
    assert inflated == [0]


class _Endless(io.RawIOBase):
    """An entry's stream that inflates without end, whatever size the zip declares for it."""

    def __init__(self) -> None:
        self.given = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if self.given > 2 * fab.MAX_FAB_BYTES:
            raise AssertionError(f"read {self.given} bytes of one FAB")
        chunk = bytes(fab.CHUNK_BYTES if size is None or size < 0 else size)
        self.given += len(chunk)
        return chunk


def test_entries_inflating_past_their_declared_sizes_are_cut_at_the_limit_plus_one_chunk(monkeypatch):
    """The bound counts the bytes actually inflated, not only the sizes the zip declares (which can lie): here each
    entry's stream inflates without end although the zip declares a few bytes for it."""
    small = _zip({"fl_runtime/app/a.py": b"small", "fl_runtime/app/b.py": b"small"})
    streams: list[_Endless] = []

    def endless(self, name, *args, **kwargs) -> _Endless:
        streams.append(_Endless())
        return streams[-1]

    monkeypatch.setattr(zipfile.ZipFile, "open", endless)
    with pytest.raises(BundleError, match=r"^the FAB inflates to more than a client reads of an app before approving"):
        fab.fab_content_hash(small)
    assert fab.MAX_FAB_BYTES < sum(s.given for s in streams) <= fab.MAX_FAB_BYTES + fab.CHUNK_BYTES


def _declaring(fab_bytes: bytes, size: int, crc: int) -> bytes:
    """The one-entry zip with its central directory declaring ``size`` bytes inflated and this CRC-32."""
    at = fab_bytes.rindex(b"PK\x01\x02")  # the central directory header: CRC-32 at offset 16, the size at 24
    fields = crc.to_bytes(4, "little") + fab_bytes[at + 20 : at + 24] + size.to_bytes(4, "little")
    return fab_bytes[: at + 16] + fields + fab_bytes[at + 28 :]


def test_a_declared_size_that_lies_low_is_all_zipfile_inflates_and_all_the_hash_covers(inflated):
    """An entry of 8 MiB whose zip declares 1,000 bytes: CPython's zipfile inflates those 1,000 and no more, so
    the hash covers exactly what ``unpack_fab`` would write; with the CRC of all 8 MiB, zipfile refuses it."""
    honest = _bomb({"fl_runtime/app/a.py": 8 * 1024 * 1024})
    lying = _declaring(honest, 1000, zlib.crc32(bytes(1000)))
    assert fab.fab_content_hash(lying) == fab.content_hash({"fl_runtime/app/a.py": bytes(1000)})
    assert inflated == [1000]
    with pytest.raises(zipfile.BadZipFile, match="Bad CRC-32"):
        fab.fab_content_hash(_declaring(honest, 1000, zlib.crc32(bytes(8 * 1024 * 1024))))


def test_a_fab_with_more_entries_than_the_limit_is_refused_before_one_is_read(inflated, tmp_path):
    crowded = _zip({f"fl_runtime/app/m{index}.py": b"x = 1\n" for index in range(fab.MAX_FAB_ENTRIES + 1)})
    expected = (
        f"the FAB holds {fab.MAX_FAB_ENTRIES + 1} entries, more than a client reads of an app before approving it "
        f"({fab.MAX_FAB_ENTRIES}, fab.MAX_FAB_ENTRIES)"
    )
    with pytest.raises(BundleError) as refused:
        fab.fab_content_hash(crowded)
    assert str(refused.value) == expected and inflated == [0]
    (tmp_path / "crowded.fab").write_bytes(crowded)
    with pytest.raises(DataError) as named:  # `app-hash --fab` names the file
        fab.fab_file_hash(tmp_path / "crowded.fab")
    assert str(named.value) == f"{tmp_path / 'crowded.fab'}: {expected}"


def test_a_pyproject_past_its_own_bound_is_refused_as_it_is_read(inflated):
    oversized = _bomb({fab.PYPROJECT: fab.MAX_PYPROJECT_BYTES + 1})
    with pytest.raises(BundleError, match=r"^the FAB's pyproject.toml inflates to more than 65536 bytes"):
        fab.fab_content_hash(oversized)
    assert inflated[0] <= fab.MAX_PYPROJECT_BYTES + fab.CHUNK_BYTES
