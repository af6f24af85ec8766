"""Bundles given as folders or archives are the same bundle when their files are."""

from __future__ import annotations

import io
import re
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest

from shoal.exceptions import BadInput
from shoal.spec.bundle import pack_bundle


def _folder(root: Path) -> Path:
    code = root / "code"
    (code / "lib").mkdir(parents=True)
    (code / "main.sh").write_text("echo hi\n")
    (code / "main.sh").chmod(0o755)
    (code / "lib" / "data.txt").write_text("42\n")
    return code


@pytest.mark.parametrize("kind", ["tar", "gztar", "bztar", "zip"])
def test_an_archive_has_the_digest_of_its_files(tmp_path: Path, kind: str) -> None:
    folder = _folder(tmp_path)
    digest, packed = pack_bundle(folder)
    packed.unlink()
    archive = Path(shutil.make_archive(str(tmp_path / "bundle"), kind, root_dir=folder))
    if kind == "zip":
        # make_archive keeps no modes in a zip; a real zip tool keeps them.
        with zipfile.ZipFile(archive, "w") as z:
            for f in sorted(folder.rglob("*")):
                info = zipfile.ZipInfo.from_file(f, f.relative_to(folder).as_posix())
                z.writestr(info, b"" if f.is_dir() else f.read_bytes())
    again, packed = pack_bundle(archive)
    try:
        assert again == digest
        with tarfile.open(packed) as tar:
            assert sorted(m.name for m in tar.getmembers() if m.isfile()) == [
                "lib/data.txt",
                "main.sh",
            ]
    finally:
        packed.unlink()


def test_an_archive_reaching_outside_itself_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("../escape.txt", "x")
    with pytest.raises(BadInput, match="outside the archive"):
        pack_bundle(bad)


def test_a_run_takes_its_bundle_from_an_archive(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import SRC

    folder = _folder(tmp_path)
    archive = Path(shutil.make_archive(str(tmp_path / "code"), "gztar", root_dir=folder))
    (tmp_path / "t.yaml").write_text(
        f"bundle: {archive.name}\ntasks:\n  - {{name: a, run: 'cat lib/data.txt'}}\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "shoal", "run", "t.yaml", "-j", "1", "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert '"results": {"a": 42}' in proc.stdout


def _tar_with(tmp_path: Path, member: tarfile.TarInfo) -> Path:
    archive = tmp_path / "bad.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        ok = tarfile.TarInfo("main.sh")
        tar.addfile(ok, io.BytesIO(b""))
        tar.addfile(member, io.BytesIO(b"x") if member.isfile() else None)
    return archive


@pytest.mark.parametrize("kind", ["name", "link"])
def test_a_tar_reaching_outside_itself_is_refused_by_the_command_line_and_the_agent_alike(
    tmp_path: Path, kind: str
) -> None:
    from shoal.agent.bundles import BundleCache, SetupFailed

    if kind == "name":
        member = tarfile.TarInfo("../escape.txt")
        member.size = 1
        what = "../escape.txt points outside the archive"
    else:
        member = tarfile.TarInfo("passwd")
        member.type, member.linkname = tarfile.SYMTYPE, "../../etc/passwd"
        what = "passwd is a link that points outside the archive"
    archive = _tar_with(tmp_path, member)
    with pytest.raises(BadInput, match=re.escape(f"cannot be unpacked: {what}")):
        pack_bundle(archive)

    class Fetches:
        """The one call the bundle cache makes to the boss: a download."""

        def download(self, path: str, dest: str) -> int:
            shutil.copyfile(archive, dest)
            return archive.stat().st_size

    cache = BundleCache(str(tmp_path / "cache"), Fetches(), "/bin/sh")
    with pytest.raises(SetupFailed, match=re.escape(f"bundle abc: {what}")):
        cache.ensure("abc", None, {})
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "cache" / "abc").exists()
