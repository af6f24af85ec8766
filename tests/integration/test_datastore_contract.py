"""The datastore contract: what every backend does, run on each one.

A backend (``shoal.datastore``) implements a few primitives and inherits the
rest; this suite holds every backend to the same behaviour: a local folder,
S3 (s3fs on a moto server on a loopback port) and SFTP (an sshd of the
suite's own on a loopback port), each opened by its URL as ``--data`` would.
A new backend adds its name to ``BACKENDS`` and a branch to ``datastore``.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from shoal.datastore import log_path, open_datastore, output_prefix, staging_prefix
from shoal.datastore.base import Datastore
from shoal.datastore.integrity import Corrupt
from shoal.exceptions import BadInput, DatastoreError, NotFound, UploadStalled
from tests.datastores import S3_ENV, MotoS3, SftpHost, moto_s3, sftp_host

BACKENDS = ["local", "s3", "sftp"]


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    with pytest.MonkeyPatch.context() as mp:
        for name, value in S3_ENV.items():
            mp.setenv(name, value)
        with moto_s3(tmp_path_factory.mktemp("moto")) as server:
            yield server


@pytest.fixture(scope="module")
def sftp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SftpHost]:
    with sftp_host(tmp_path_factory.mktemp("sftp")) as host:
        yield host


@pytest.fixture(params=BACKENDS)
def datastore(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Datastore]:
    if request.param == "local":
        yield open_datastore(tmp_path / "data")
        return
    if request.param in ("s3", "sftp"):
        server = request.getfixturevalue(request.param)
        yield open_datastore(server.url(), server.options())
        return
    raise AssertionError(f"no such backend {request.param}")  # pragma: no cover


def read(datastore: Datastore, path: str) -> bytes:
    with datastore.open_read(path) as f:
        return f.read()


def test_what_is_written_is_read_back_whole_or_from_an_offset(datastore: Datastore) -> None:
    data = bytes(range(256)) * 5000  # more than one chunk
    datastore.write_bytes("sets/a.bin", data)
    assert datastore.exists("sets/a.bin")
    assert read(datastore, "sets/a.bin") == data
    assert datastore.size("sets/a.bin") == len(data)
    assert b"".join(datastore.chunks("sets/a.bin", 1000)) == data[1000:]
    datastore.write_bytes("sets/a.bin", b"new")  # replaces
    assert read(datastore, "sets/a.bin") == b"new"


def test_a_local_file_is_copied_in(datastore: Datastore, tmp_path: Path) -> None:
    source = tmp_path / "input.csv"
    source.write_bytes(b"a,b\n1,2\n")
    datastore.write_file("inputs/input.csv", source)
    assert read(datastore, "inputs/input.csv") == b"a,b\n1,2\n"


def test_a_file_being_written_is_not_there_until_it_is_complete(datastore: Datastore) -> None:
    datastore.write_bytes("out.txt", b"old")
    with datastore.open_write("out.txt") as f:
        f.write(b"half")
        assert read(datastore, "out.txt") == b"old"
        assert datastore.files("") == ["out.txt"]
        with datastore.open_write("new.txt") as g:
            g.write(b"x")
            assert not datastore.exists("new.txt")
            assert datastore.files("") == ["out.txt"]
    assert read(datastore, "out.txt") == b"half"
    assert datastore.files("") == ["new.txt", "out.txt"]


def test_a_write_that_fails_leaves_nothing_and_the_old_file_intact(datastore: Datastore) -> None:
    datastore.write_bytes("out.txt", b"old")
    with pytest.raises(RuntimeError), datastore.open_write("out.txt") as f:
        f.write(b"half")
        raise RuntimeError("the upload broke off")
    with pytest.raises(RuntimeError), datastore.open_write("other.txt") as f:
        raise RuntimeError("the upload broke off")
    assert read(datastore, "out.txt") == b"old"
    assert not datastore.exists("other.txt")
    assert datastore.files("") == ["out.txt"]


def test_a_missing_file_is_not_found(datastore: Datastore) -> None:
    assert not datastore.exists("nothing.txt")
    with pytest.raises(NotFound):
        datastore.open_read("nothing.txt")
    with pytest.raises(NotFound):
        datastore.size("nothing.txt")
    datastore.write_bytes("folder/file", b"x")
    assert not datastore.exists("folder")  # a folder is not a file
    with pytest.raises(NotFound):
        datastore.open_read("folder")


@pytest.mark.parametrize(
    "path", ["", "/etc/passwd", "../x", "a/../../x", ".", "a/..", "a\0b", "n" * 300 + "/x"]
)
def test_a_path_that_could_leave_the_datastore_is_refused(datastore: Datastore, path: str) -> None:
    with pytest.raises(BadInput, match="bad datastore path"):
        datastore.write_bytes(path, b"x")
    with pytest.raises(BadInput, match="bad datastore path"):
        datastore.exists(path)


def test_files_are_listed_under_a_folder_and_staged_outputs_never_are(
    datastore: Datastore,
) -> None:
    for path in ["b/2.txt", "a/1.txt", "a/deep/3.txt", "c.txt", staging_prefix(7) + "o.txt"]:
        datastore.write_bytes(path, b"x")
    assert datastore.files("a/") == ["a/1.txt", "a/deep/3.txt"]
    assert datastore.files("a") == ["a/1.txt", "a/deep/3.txt"]
    assert datastore.files("nothing/") == []
    assert datastore.listing("") == ["a/1.txt", "a/deep/3.txt", "b/2.txt", "c.txt"]
    assert datastore.listing(staging_prefix(7)) == []


def test_a_file_or_a_whole_folder_is_removed(datastore: Datastore) -> None:
    for path in ["keep.txt", "gone/1.txt", "gone/sub/2.txt", "file.txt"]:
        datastore.write_bytes(path, b"x")
    datastore.remove("file.txt")
    datastore.remove("gone/")
    datastore.remove("never/was.txt")  # nothing there: nothing to do
    assert datastore.files("") == ["keep.txt"]


def test_a_rename_replaces_the_target_in_one_step(datastore: Datastore) -> None:
    datastore.write_bytes("from.txt", b"new")
    datastore.write_bytes("to/there.txt", b"old")
    datastore.rename("from.txt", "to/there.txt")
    datastore.rename("to/there.txt", "elsewhere/deeper/there.txt")
    assert datastore.files("") == ["elsewhere/deeper/there.txt"]
    assert read(datastore, "elsewhere/deeper/there.txt") == b"new"


def test_a_path_blocked_by_a_file_cannot_be_written(datastore: Datastore) -> None:
    datastore.write_bytes("blocked", b"a file where a folder should be")
    with pytest.raises(DatastoreError, match=r"cannot write 'blocked/out\.txt'"):
        datastore.write_bytes("blocked/out.txt", b"x")
    datastore.write_bytes("staged.txt", b"x")
    with pytest.raises(DatastoreError):
        datastore.rename("staged.txt", "blocked/staged.txt")
    assert datastore.files("") == ["blocked", "staged.txt"]


async def _stream(parts: list[bytes], then_wait: float = 0.0) -> AsyncIterator[bytes]:
    for part in parts:
        yield part
    await asyncio.sleep(then_wait)


def test_a_stream_is_stored_whole_and_one_that_stalls_is_dropped(datastore: Datastore) -> None:
    size = asyncio.run(datastore.write_stream("up/ok.bin", _stream([b"ab", b"cd"]), 5.0))
    assert size == 4 and read(datastore, "up/ok.bin") == b"abcd"
    with pytest.raises(UploadStalled, match=r"sent nothing for 0\.2s"):
        asyncio.run(datastore.write_stream("up/stalled.bin", _stream([b"ab"], 30.0), 0.2))
    assert datastore.files("up/") == ["up/ok.bin"]


def test_staged_outputs_are_promoted_or_discarded(datastore: Datastore) -> None:
    datastore.write_bytes(staging_prefix(5) + "out.txt", b"won")
    datastore.write_bytes(staging_prefix(5) + "sub/more.txt", b"won too")
    datastore.write_bytes(staging_prefix(6) + "out.txt", b"lost")
    assert datastore.staged_attempts() == [5, 6]
    prefix = output_prefix(1, "make")
    missing = datastore.promote(5, prefix, ["out.txt", "sub/more.txt", "never.txt"])
    assert missing == ["never.txt"]
    assert read(datastore, prefix + "out.txt") == b"won"
    assert read(datastore, prefix + "sub/more.txt") == b"won too"
    # Asked again (a transaction tried twice): what is in place counts as there.
    assert datastore.promote(5, prefix, ["out.txt"]) == []
    datastore.discard_staged([5, 6])
    assert datastore.staged_attempts() == []
    assert datastore.listing("") == [prefix + "out.txt", prefix + "sub/more.txt"]


def test_the_layout_names_where_each_kind_of_file_lives() -> None:
    assert log_path(3, "sim-1", 42) == "logs/3/sim-1/42.log"
    assert output_prefix(3, "sim-1") == "runs/3/sim-1/"
    assert staging_prefix(42) == ".staging/42/"


def test_every_file_written_records_its_size_time_and_sha256(datastore: Datastore) -> None:
    data = b"results\n" * 40000
    before = time.time()
    datastore.write_bytes("sets/r.txt", data)
    asyncio.run(datastore.write_stream("up/s.bin", _stream([b"ab", b"cd"]), 5.0))
    info = datastore.info("sets/r.txt")
    assert (info.path, info.size, info.sha256) == (
        "sets/r.txt",
        len(data),
        hashlib.sha256(data).hexdigest(),
    )
    assert info.modified is not None and before - 5 <= info.modified <= time.time() + 5
    assert datastore.info("up/s.bin").sha256 == hashlib.sha256(b"abcd").hexdigest()
    assert [e.path for e in datastore.entries("")] == ["sets/r.txt", "up/s.bin"]
    assert datastore.verify("sets/r.txt") is not None  # intact: reads through


def test_a_record_follows_its_file_through_promotion_and_removal(datastore: Datastore) -> None:
    datastore.write_bytes(staging_prefix(9) + "out.txt", b"won")
    prefix = output_prefix(2, "make")
    assert datastore.promote(9, prefix, ["out.txt"]) == []
    assert datastore.info(prefix + "out.txt").sha256 == hashlib.sha256(b"won").hexdigest()
    assert list(datastore.verified_chunks(prefix + "out.txt")) == [b"won"]
    datastore.remove(prefix)
    datastore.write_bytes(prefix + "out.txt", b"again")  # a fresh record, not the old one
    assert datastore.verify(prefix + "out.txt") is not None


def test_a_file_changed_behind_the_datastores_back_is_found_corrupt_on_read(
    datastore: Datastore,
) -> None:
    path = output_prefix(4, "prep") + "data.csv"
    datastore.write_bytes(path, b"a,b\n1,2\n")
    with datastore._write(path) as f:  # the stored bytes rot; the record stays
        f.write(b"a,b\n1,3\n")
    with pytest.raises(
        Corrupt, match=r"'runs/4/prep/data\.csv' \(output of task 'prep' in run 4\) is corrupt"
    ):
        datastore.verify(path)
    added = "inputs/table.csv"
    datastore.write_bytes(added, b"x" * 1000)
    with datastore._write(added) as f:
        f.write(b"x" * 999)  # cut short
    with pytest.raises(Corrupt, match=r"'inputs/table\.csv' \(an input added to the datastore\)"):
        datastore.verify(added)
