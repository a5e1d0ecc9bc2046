"""verify-transcript: a member's signed transcript checks out offline, and one changed byte anywhere does not."""

from __future__ import annotations

import dataclasses

import pytest

from fl_runtime.app.pins import ClientPins, Member
from fl_runtime.app.transcript import TranscriptError
from fl_runtime.app.verify import verify_file
from fl_runtime.learning.partition import PartitionSpec, partition
from fl_runtime.learning.task import TrainingPlan
from tests.helpers import run_cli
from tests.relay_harness import Federation, run_identity

MEMBERS = ("clinic-a", "insurer-b", "insurer-c")


@pytest.fixture(scope="module")
def finished(synthetic, tmp_path_factory):
    """One relayed run of three members (its transcripts are only read; the tests change copies)."""
    test, clients = partition(synthetic, PartitionSpec(3, "iid", test_fraction=0.2, seed=2))
    with run_identity():
        federation = Federation.start(tmp_path_factory.mktemp("run"), dict(zip(MEMBERS, clients)), test)
        relay, final, _ = federation.run(TrainingPlan(rounds=3))
    return federation, relay, final


def test_a_members_transcript_verifies_with_its_pins_and_names_what_it_holds(finished):
    federation, _, final = finished
    path = federation.folder / "views" / "insurer-b" / "transcript.jsonl"
    verified = verify_file(path, ClientPins.read(federation.pins["insurer-b"]))
    assert verified.writer == "insurer-b" and verified.signed and verified.members == MEMBERS
    assert verified.steps == 1 + final.stop.round  # the moments and every round; its own last answer is pending
    assert verified.last == f"the evaluation of the round-{final.stop.round} model"


def test_every_changed_byte_of_a_transcript_is_refused(finished, tmp_path):
    """One byte flipped at each of 400 positions spread over the whole file, the closing line included."""
    federation, _, _ = finished
    original = (federation.folder / "views" / "clinic-a" / "transcript.jsonl").read_bytes()
    changed = tmp_path / "changed.jsonl"
    positions = sorted({round(i * (len(original) - 1) / 399) for i in range(400)})
    for position in positions:
        data = bytearray(original)
        data[position] ^= 0x01
        changed.write_bytes(bytes(data))
        with pytest.raises(TranscriptError):
            verify_file(changed)
    changed.write_bytes(original)
    assert verify_file(changed).writer == "clinic-a"


def test_a_dropped_line_and_an_added_space_are_refused(finished, tmp_path):
    federation, _, _ = finished
    lines = (federation.folder / "views" / "clinic-a" / "transcript.jsonl").read_bytes().splitlines(keepends=True)
    path = tmp_path / "edited.jsonl"
    path.write_bytes(b"".join(lines[:4] + lines[5:]))
    with pytest.raises(TranscriptError):
        verify_file(path)
    path.write_bytes(b"".join([lines[0].replace(b'":', b'": ', 1), *lines[1:]]))
    with pytest.raises(TranscriptError, match="line 1: not in canonical form"):
        verify_file(path)


def test_pins_that_name_other_members_or_keys_refuse_the_transcript(finished):
    federation, _, _ = finished
    path = federation.folder / "views" / "clinic-a" / "transcript.jsonl"
    pins = ClientPins.read(federation.pins["clinic-a"])
    other = dataclasses.replace(pins, members=tuple(Member(m.name, "sha256:" + "0" * 64) for m in pins.members))
    with pytest.raises(TranscriptError, match="member clinic-a's identity key .* is not its pinned one"):
        verify_file(path, other)


def test_the_server_keeps_a_transcript_of_every_step_that_verifies_too(finished, tmp_path):
    _, relay, final = finished
    path = tmp_path / "server.jsonl"
    path.write_bytes(relay.transcript.closed(None))
    verified = verify_file(path)
    assert verified.writer == "server" and not verified.signed
    assert verified.steps == 2 + final.stop.round and verified.last == "the end of the run"


def test_the_command_line_accepts_a_transcript_and_refuses_a_changed_one_naming_the_line(finished, tmp_path):
    federation, _, _ = finished
    path = federation.folder / "views" / "insurer-c" / "transcript.jsonl"
    done = run_cli("verify-transcript", path, "--pins", federation.pins["insurer-c"])
    assert done.returncode == 0, done.stderr
    assert f"{path}: a valid transcript of run 7, written by insurer-c: 3 members" in done.stdout
    assert "members and fingerprints as pinned" in done.stdout
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x04
    changed = tmp_path / "changed.jsonl"
    changed.write_bytes(bytes(data))
    done = run_cli("verify-transcript", changed)
    assert done.returncode == 2 and done.stderr.startswith(f"error: {changed}: line ")
