"""Finding a dataset in SRC: extracted folders and downloaded archives seen as one tree.

`_Tree` maps dataset-relative paths (audio/..., meta/..., evaluation_setup/...) to the extracted
file where there is one, else to the archive member, and copies or extracts them on demand.
"""

import os
import shutil
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from sed.data.prepare.specs import DatasetSpec
from sed.errors import PrepareError

MARKER = ".sed-prepare"  # written first, so a re-run knows DEST is ours even if it was cut short
CONTENT_DIRS = ("audio", "meta", "evaluation_setup")


class _Tree:
    """SRC as one tree of dataset-relative paths (audio/..., meta/..., evaluation_setup/...):
    the files of extracted folders where present, else the members of the dataset's archives."""

    def __init__(self, spec: DatasetSpec, src: Path, skip: Path):
        self.src = src
        self.files: dict[str, Path | tuple[zipfile.ZipFile, zipfile.ZipInfo]] = {}
        self.roots = _extracted_roots(src, spec.storage, skip)
        for root in self.roots:
            for path in sorted(p for c in CONTENT_DIRS for p in (root / c).rglob("*")):
                if path.is_file() and not path.name.startswith("."):
                    self.files.setdefault(path.relative_to(root).as_posix(), path)
        extracted = {rel.split("/")[0] for rel in self.files}
        self.archives_used: list[str] = []
        self.missing: list[str] = []  # archives absent, their content not extracted either
        self._tmp = tempfile.TemporaryDirectory(prefix="sed-prepare-")
        self._zips: list[zipfile.ZipFile] = []
        for name in spec.archives:
            found = sorted(src.rglob(name), key=lambda p: (len(p.parts), p))
            if not found:
                content = "evaluation_setup" if name.endswith(".meta.zip") else "audio"
                self.missing += [] if content in extracted else [name]
                continue
            try:
                self._zips.append(zipfile.ZipFile(found[0]))
            except (zipfile.BadZipFile, OSError) as error:
                raise PrepareError(
                    f"{found[0]} is not a readable zip archive ({error}); the download may be "
                    f"incomplete: download {name} again from {spec.url}"
                ) from error
            members = [
                info
                for info in self._zips[-1].infolist()
                if not info.is_dir()
                and not info.filename.startswith("__MACOSX/")
                and ".." not in PurePosixPath(info.filename).parts  # never leave the tree
            ]
            # Strip the archive's own top folder (STORAGE/) unless members start with audio/ etc.
            tops = {info.filename.partition("/")[0] for info in members}
            top = tops.pop() if len(tops) == 1 else ""
            strip = top not in ("", *CONTENT_DIRS) and all("/" in i.filename for i in members)
            prefix = len(top) + 1 if strip else 0
            new = {
                info.filename[prefix:]: (self._zips[-1], info)
                for info in members
                if info.filename[prefix:] not in self.files
            }
            self.files.update(new)
            self.archives_used += [name] if new else []

    def close(self) -> None:
        for archive in self._zips:
            archive.close()
        self._tmp.cleanup()

    def where(self, rel: str) -> str:
        """Where rel is read from, for messages: a path, or ARCHIVE:MEMBER."""
        entry = self.files[rel]
        return str(entry) if isinstance(entry, Path) else f"{entry[0].filename}:{entry[1].filename}"

    def path(self, rel: str) -> Path:
        """A filesystem path holding rel (archive members are extracted to a scratch folder)."""
        entry = self.files[rel]
        if isinstance(entry, Path):
            return entry
        target = Path(self._tmp.name, *PurePosixPath(rel).parts)
        if not target.exists():
            self.copy(rel, target)
        return target

    def copy(self, rel: str, target: Path) -> None:
        """Put rel's bytes at target: a hard link or copy of an extracted file, or the archive
        member streamed out. Skips a target that already has the right size."""
        entry = self.files[rel]
        size = entry.stat().st_size if isinstance(entry, Path) else entry[1].file_size
        if target.is_file() and not target.is_symlink() and target.stat().st_size == size:
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)  # never write through a stale hard link into SRC
        if isinstance(entry, Path):
            try:
                os.link(entry, target)
                return
            except OSError:
                pass  # another file system: copy
        part = target.with_name(target.name + ".part")
        try:
            with (
                entry.open("rb") if isinstance(entry, Path) else entry[0].open(entry[1]) as fin,
                open(part, "wb") as fout,
            ):
                shutil.copyfileobj(fin, fout, 1 << 20)
            os.replace(part, target)
        finally:
            part.unlink(missing_ok=True)


def _extracted_roots(src: Path, storage: str, skip: Path) -> list[Path]:
    """Extracted dataset roots: folders within two levels of SRC holding audio/, meta/ or
    evaluation_setup/ (only those named STORAGE if any is), never DEST or a prepared dataset."""
    level, roots = [src], []
    for depth in range(3):
        level = [d for d in level if d.resolve() != skip and not (d / MARKER).exists()]
        roots += [d for d in level if any((d / c).is_dir() for c in CONTENT_DIRS)]
        if depth < 2:
            level = [
                d
                for parent in level
                for d in sorted(parent.iterdir())
                if d.is_dir() and not d.name.startswith(".")
            ]
    # A root inside another root is part of that dataset's tree (TUT 2017's non_verified/
    # holds meta/ and evaluation_setup/ of its own), never a second source of its files: a
    # verified file that is missing must be refused, not replaced by its non-verified twin.
    roots = [d for d in roots if not any(r != d and r in d.parents for r in roots)]
    return [d for d in roots if d.name == storage] or roots


def _holds(src: Path) -> str:
    """What SRC holds, for messages about a missing file."""
    found = sorted(p.name for p in src.iterdir())
    return f"SRC holds: {', '.join(found[:12]) + (' ...' if len(found) > 12 else '') or 'nothing'}."
