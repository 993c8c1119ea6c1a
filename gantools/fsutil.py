"""Atomic output: a file is written under a temporary name beside it and renamed on success;
a folder receives one command's files as a whole, beside files gantools did not write.

A failed or interrupted command leaves no half-written file behind and never touches a file
gantools did not write: gantools cannot know who wrote an existing single file, so a file output
never replaces one unless the user asks (`overwrite`, the commands' `--overwrite`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Iterable, Iterator

from gantools.errors import GantoolsError

MANIFEST = ".gantools-manifest.json"
MANIFEST_FORMAT = "gantools-output-folder"


def check_target(target: str | os.PathLike, overwrite: bool = False,
                 inputs: Iterable[str | os.PathLike | None] = ()) -> Path:
    """Refuse, with one line, to write the file `target` where it exists (unless `overwrite`), is a
    folder, or is one of the command's `inputs` (even with `overwrite`). Commands call it before any
    work, so that a long run does not end in a refusal; `atomic_path` checks again.
    """
    target = Path(target)
    for source in inputs:
        if source not in (None, "-") and _same_file(target, source):
            raise GantoolsError(f"{target}: is an input of this command; write the output to another file "
                                "(--overwrite never replaces an input)")
    check_parents(target)
    try:
        is_dir = target.is_dir()
    except OSError as e:  # e.g. a name too long
        raise cannot(target, e) from None
    if is_dir:
        raise GantoolsError(f"{target}: is a folder; give a file name")
    if not overwrite and os.path.lexists(target):
        raise GantoolsError(f"{target} exists; give --overwrite to replace it")
    return target


def check_parents(path: Path, shown: Path | None = None) -> None:
    """Refuse, with one line naming `shown` (default `path`), a path whose nearest existing folder above is
    a file (`out.png/x.png`, where out.png is a file): nothing could be created there."""
    for parent in path.parents:
        try:
            st = os.stat(parent)
        except (FileNotFoundError, NotADirectoryError):  # not there, or a file further up
            continue
        except OSError as e:
            raise cannot(shown or path, e) from None
        if not stat.S_ISDIR(st.st_mode):
            raise GantoolsError(f"{shown or path}: cannot create: {parent} is not a folder")
        return


def cannot(path: str | os.PathLike, e: OSError, doing: str = "cannot create") -> GantoolsError:
    """An OSError met while writing `path` as one line: "PATH: cannot create: File name too long"."""
    return GantoolsError(f"{path}: {doing}: {e.strerror or e}")


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; it takes the name `target` if the block succeeds.

    An existing target is refused (`check_target`) before the block and again at the rename, which
    never replaces a file that appeared meanwhile; `overwrite` replaces it. On any exception the
    temporary file is removed and the target is untouched.
    """
    target = check_target(target, overwrite)
    made: list[Path] = []  # the temporary's name, recorded before the file exists (a Ctrl-C at any moment)
    try:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = _temporary(target.parent, target.name, "tmp", made)
        except OSError as e:  # e.g. a folder that cannot be written (/proc)
            raise cannot(target, e) from None
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        if overwrite:
            os.replace(tmp, target)
        else:
            _rename_no_replace(tmp, target)
    except BaseException:
        for tmp in made:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        raise


def _rename_no_replace(tmp: Path, target: Path) -> None:
    """Give `tmp` the name `target` only if no file has it, even one that appeared a moment ago."""
    try:
        linked = _claim(tmp, target)
    except FileExistsError:
        raise GantoolsError(f"{target} exists (it appeared while gantools was writing); "
                            "give --overwrite to replace it") from None
    if linked:
        tmp.unlink()
        return
    try:
        os.replace(tmp, target)  # over the empty file _claim created
    except BaseException:
        target.unlink()
        raise


def _claim(tmp: Path, target: Path) -> bool:
    """Take the name `target` in one step or raise FileExistsError: a hard link to `tmp` (True), or
    where the file system has no links, a new empty file (False)."""
    try:
        os.link(tmp, target)
        return True
    except FileExistsError:
        raise
    except OSError:
        os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        return False


def _same_file(a: Path, b: str | os.PathLike) -> bool:
    """Whether `a` and `b` are one existing file (False for toy sources and missing paths)."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


class OutputFolder:
    """A folder that receives one command's files as a whole, next to files gantools did not write.

    `.gantools-manifest.json` in the folder lists the files gantools wrote there (name, size,
    modification time) and their `kind`. A folder holding anything else (a file not listed, or a
    listed file changed since) is refused unless `overwrite`; even then those files are never
    touched, and writing a file of the same name is refused. Gantools' own earlier output of the
    same kind is refused unless `overwrite`, which replaces it. New files are written under
    temporary names (`path(name)`); `commit()` puts all of them in place, removes the earlier
    output's other files and writes the manifest, or on any error leaves the folder as it was;
    `discard()` removes the temporaries. No folder is renamed, so `.` works.

    `subfolder(name)` gives an OutputFolder inside (balance's class folders): it keeps its own manifest
    of its files, and this folder's manifest lists it under `folders`, so a later run counts it as
    gantools' earlier output; committing this folder after a new run clears the gantools files of an
    earlier subfolder the run did not write again (a user's file there stays).
    """

    def __init__(self, folder: str | os.PathLike, kind: str, overwrite: bool = False, create: bool = True):
        self.folder, self.kind = Path(folder), kind
        self._shown = self.folder if self.folder.name not in ("", "..") else self.folder.resolve()
        check_parents(self.folder, self._shown)
        try:
            self._created = [p for p in (self.folder, *self.folder.parents) if not p.exists()]
            if self.folder.exists() and not self.folder.is_dir():
                raise GantoolsError(f"{self._shown}: exists and is not a folder")
            self._overwrite = overwrite
            self._ours, self._our_folders, self._others = (self._read_contents() if self.folder.exists()
                                                           else ({}, set(), set()))
        except OSError as e:  # e.g. a name too long, a folder that cannot be read
            raise cannot(self._shown, e, "cannot read") from None
        self._subs: dict[str, OutputFolder] = {}  # subfolders of this run, by name
        self._new: dict[str, Path] = {}  # name -> its temporary
        self._temps: list[Path] = []  # every temporary made, removed at the end
        if not overwrite and self._others:
            example = sorted(self._others)[0]
            raise GantoolsError(
                f"{self._shown}: holds files gantools did not write (e.g. {example}); choose a new or empty "
                "folder, or give --overwrite to write beside them (they are never touched)")
        if not overwrite and (self._ours or self._our_folders):
            what = f"{len(self._ours)} file(s)" + (f" and {len(self._our_folders)} folder(s)" if self._our_folders else "")
            raise GantoolsError(f"{self._shown}: holds {what} of an earlier gantools run; "
                                "give --overwrite to replace them, or choose another folder")
        if create:  # create=False: only the refusals above, before any work (check_folder)
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
            except OSError as e:  # e.g. under /proc
                raise cannot(self._shown, e) from None

    def _read_contents(self) -> tuple[dict[str, dict], set[str], set[str]]:
        """Split the folder's entries into gantools' own earlier files (per the manifest), its own earlier
        subfolders (each a gantools output folder of this kind) and others."""
        names = set(os.listdir(self.folder)) - {MANIFEST}
        listed, folders = self._read_manifest() if (self.folder / MANIFEST).exists() else ({}, [])
        ours = {n: st for n, st in listed.items() if n in names and _stat(self.folder / n) == st}
        our_folders = {n for n in folders if n in names and not (self.folder / n).is_symlink()
                       and (self.folder / n / MANIFEST).is_file()}
        return ours, our_folders, names - set(ours) - our_folders

    def _read_manifest(self) -> tuple[dict[str, dict], list[str]]:
        path = self.folder / MANIFEST
        try:
            m = json.loads(path.read_text(encoding="utf-8"))
            kind, files, folders = m["kind"], m["files"], m.get("folders", [])
            ok = m["format"] == MANIFEST_FORMAT and all(
                plain_name(n) and set(st) == {"size", "mtime_ns"} for n, st in files.items()) and all(
                plain_name(n) for n in folders)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            ok = False
        if not ok:
            raise GantoolsError(f"{path}: not a gantools manifest, so the files of {self._shown} cannot be "
                                "told apart; choose another folder")
        if kind != self.kind:
            raise GantoolsError(f"{self._shown}: holds gantools' {kind} output, not {self.kind}; "
                                "choose another folder")
        return files, list(folders)

    def subfolder(self, name: str) -> "OutputFolder":
        """An OutputFolder `name` inside this one (same kind and overwrite), recorded as gantools' own in
        this one's manifest; commit it before this one."""
        if not plain_name(name) or name in self._subs or name in self._new:
            raise ValueError(f"{name!r}: not a new plain folder name")
        if name in self._others and not (self.folder / name).is_dir():
            raise GantoolsError(f"{self.folder / name}: gantools did not write this file and will not replace "
                                "it; choose another folder")
        self._subs[name] = OutputFolder(self.folder / name, self.kind, self._overwrite)
        return self._subs[name]

    def path(self, name: str) -> Path:
        """A temporary path in the folder to write the file `name` to; it takes that name on commit."""
        if not plain_name(name) or name in self._new:
            raise ValueError(f"{name!r}: not a new plain file name")
        if name in self._others:
            raise GantoolsError(f"{self.folder / name}: gantools did not write this file (or it changed "
                                "since) and will not replace it; choose another folder")
        self._new[name] = self._temporary(name)
        return self._new[name]

    def commit(self) -> None:
        """Put the new files in place, remove the earlier output's other files, write the manifest.

        On any error (or Ctrl-C) the folder is left as it was.
        """
        try:
            self._publish()
        except BaseException:
            self.discard()
            raise
        self._remove_temporaries()  # now the earlier output, moved aside
        for name in sorted(self._our_folders - set(self._subs)):  # earlier subfolders this run did not write
            with contextlib.suppress(GantoolsError, OSError):
                OutputFolder(self.folder / name, self.kind, overwrite=True)._clear()

    def _clear(self) -> None:
        """Remove gantools' earlier files and manifest here (never another file), and the folder if empty."""
        for name in self._ours:
            (self.folder / name).unlink()
        (self.folder / MANIFEST).unlink()
        with contextlib.suppress(OSError):
            self.folder.rmdir()

    def _publish(self) -> None:
        mode = 0o666 & ~_umask()
        files = {}
        for name, tmp in self._new.items():
            os.chmod(tmp, mode)
            files[name] = _stat(tmp)  # a rename keeps size and modification time
        manifest = self._temporary(MANIFEST)
        manifest.write_text(json.dumps({
            "format": MANIFEST_FORMAT, "version": 1, "kind": self.kind, "gantools_version": _version(),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "files": files,
            **({"folders": sorted(self._subs)} if self._subs else {}),
        }, indent=1) + "\n", encoding="utf-8")
        os.chmod(manifest, mode)
        done: list[tuple[Path, Path]] = []  # renames made, undone in reverse on any error
        try:
            for name in sorted(self._ours):  # the earlier output goes aside
                aside = self._temporary(name, "old")
                os.replace(self.folder / name, aside)
                done.append((self.folder / name, aside))
            for name, tmp in self._new.items():
                if os.path.lexists(self.folder / name):
                    raise GantoolsError(f"{self.folder / name}: appeared while gantools was writing; "
                                        "nothing was written")
                os.replace(tmp, self.folder / name)
                done.append((tmp, self.folder / name))
            os.replace(manifest, self.folder / MANIFEST)  # the new output is complete
        except BaseException:
            for src, dst in reversed(done):
                os.replace(dst, src)
            raise

    def discard(self) -> None:
        """Remove the temporaries (and the folders this created); the folder stays as it was."""
        self._remove_temporaries()
        for d in self._created:
            with contextlib.suppress(OSError):
                d.rmdir()  # only when empty

    def _temporary(self, name: str, tag: str = "tmp") -> Path:
        try:
            return _temporary(self.folder, name, tag, self._temps)  # recorded before it exists
        except OSError as e:
            raise cannot(self.folder / name, e) from None

    def _remove_temporaries(self) -> None:
        for tmp in self._temps:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        self._temps.clear()
        self._new.clear()

    def __enter__(self) -> "OutputFolder":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


def check_folder(folder: str | os.PathLike, kind: str, overwrite: bool = False) -> None:
    """Refuse, with one line and before any work, a folder that `OutputFolder` would refuse; creates nothing."""
    OutputFolder(folder, kind, overwrite, create=False)


def _temporary(folder: Path, name: str, tag: str, record: list[Path]) -> Path:
    """A new empty hidden file `.NAME.TAG-XXXXXXXX` in `folder` (same suffix as NAME), appended to
    `record` before it is created: a Ctrl-C at any moment leaves no file that `record` misses
    (tempfile.mkstemp would create it before its name could be recorded)."""
    suffix = Path(name).suffix
    for _ in range(100):
        tmp = folder / f".{name}.{tag}-{secrets.token_hex(4)}{suffix}"
        record.append(tmp)
        try:
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:  # another's file: not ours to remove
            record.remove(tmp)
            continue
        os.close(fd)  # (a name recorded but never created is harmless: cleanup skips missing files)
        return tmp
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(folder / f".{name}.{tag}-*"))


def _stat(path: Path) -> dict:
    st = os.lstat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def plain_name(name) -> bool:
    """A file name without folders, not '', '.', '..' or gantools' manifest's name."""
    return isinstance(name, str) and name not in ("", ".", "..", MANIFEST) and "/" not in name \
        and os.sep not in name and (not os.altsep or os.altsep not in name)


def _version() -> str:
    from gantools import __version__

    return __version__


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
