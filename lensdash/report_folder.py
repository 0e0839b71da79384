"""Where a report is written: checked before any data is read, replaced crash-safely, never anything else touched.

The CLI runs over people's own folders, so it never deletes or overwrites what it did not write.

* ``--out`` may be a path that does not exist yet (the missing folders are made with the user's umask), an empty
  folder, or a previous lensdash report: a folder holding the marker :data:`MARKER` (``{"format": ..., "id":
  <the report's random id>, "pid": ..., "files": [<the names it wrote>]}``) and nothing but those files.
* Anything else is refused before any data is read, with what to do: a folder with other content (an older report
  without the marker included), ``.``, the working directory or one of its ancestors, a folder holding an input,
  a symbolic link, a file, a path inside a file, a path that cannot be created.
* A report is written into a fresh folder beside the target (the marker first, so that even a half-written one is
  provably ours), which is then swapped with the target by one atomic ``renameat2(RENAME_EXCHANGE)`` where the
  system has it (Linux); elsewhere the old report is renamed aside and the new one renamed in. The old one is then
  removed file by file (its listed files, the marker, then the empty folder: never a recursive delete), so a run
  killed at any point leaves the complete old or the complete new report at the target (on the fallback, between
  its two renames, the complete old one beside it), plus at most a folder that is provably ours.
* Such leftovers of killed runs (``.NAME.lensdash-new-ID``, ``.NAME.lensdash-old-ID`` beside the target) are removed
  by the next run's commit when they are provably reports (a valid marker with its random id, nothing but the files
  it lists) and the process that wrote them is gone (a run going on now is left alone).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import re
import signal
import sys
import threading
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lensdash.errors import InputError

if TYPE_CHECKING:
    from lensdash.report import Report

#: The file that makes a folder provably a lensdash report.
MARKER = ".lensdash-report.json"
MARKER_FORMAT = "lensdash-report/1"
_ID = re.compile(r"[0-9a-f]{32}")
_LEFTOVER = re.compile(r"\.(?P<name>.*)\.lensdash-(?P<kind>new|old)-(?P<id>[0-9a-f]{32})")
_NAME_KEEP = 80  # of the target's name in a leftover's name, so that it stays under the 255-byte limit
_EXPECTED = "a new folder, an empty one, or a previous lensdash report (which is replaced)"
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The marker of ``folder`` if it is provably (part of) a lensdash report, else ``None``.

    Provably: a real folder (not a link) whose marker is a small JSON object in :data:`MARKER_FORMAT` with a
    32-hex-digit id and a list of plain file names, and which holds nothing but the marker and regular files among
    those names.
    """
    try:
        if folder.is_symlink() or not folder.is_dir():
            return None
        marker = folder / MARKER
        if marker.is_symlink() or not marker.is_file() or marker.stat().st_size > 65536:
            return None
        data = json.loads(marker.read_text(encoding="utf-8"))
        entries = os.listdir(folder)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != MARKER_FORMAT:
        return None
    ident, files = data.get("id"), data.get("files")
    if not (isinstance(ident, str) and _ID.fullmatch(ident)):
        return None
    if not (isinstance(files, list) and all(isinstance(name, str) and _plain_name(name) for name in files)):
        return None
    allowed = {*files, MARKER}
    for entry in entries:
        path = folder / entry
        if entry not in allowed or path.is_symlink() or not path.is_file():
            return None
    return data


def _plain_name(name: str) -> bool:
    separators = {"/", "\0", os.sep, os.altsep or "/"}
    return name not in ("", ".", "..", MARKER) and not any(s in name for s in separators)


def check_output_folder(out: str | os.PathLike, inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """Refuse an ``--out`` that a report must not replace; touches nothing.

    Args:
        out: the output folder.
        inputs: the files the report reads; ``out`` must not hold any of them.

    Returns:
        ``out`` as a path.

    Raises:
        InputError: ``out`` is a symbolic link, a file, a path inside a file, ``.``, the working directory or an
            ancestor of it or of an input, or a folder that holds anything but a previous lensdash report.

    Example:
        >>> check_output_folder(".")
        Traceback (most recent call last):
        ...
        lensdash.errors.InputError: .: expected a new folder, an empty one, or a previous lensdash report \
(which is replaced), found the working directory. Give a new folder, for example --out lensdash-report.
    """
    path = Path(out)

    def refuse(found: str, fix: str) -> InputError:
        return InputError.build(_EXPECTED, found, where=str(out), fix=fix)

    if not str(out):
        raise refuse("an empty path", "Give a new folder, for example --out lensdash-report.")
    if path.is_symlink():
        raise refuse("a symbolic link", "Give the folder it points to, or a new path: a link is never replaced.")
    try:
        resolved, cwd = path.resolve(), Path.cwd().resolve()
    except (OSError, RuntimeError) as exc:
        raise refuse(f"a path that cannot be resolved ({exc})", "Give a new folder.") from None
    if resolved == cwd or resolved in cwd.parents:
        found = "the working directory" if resolved == cwd else "a folder that holds the working directory"
        raise refuse(found, "Give a new folder, for example --out lensdash-report.")
    for source in inputs:
        source_path = Path(source).resolve()
        if resolved == source_path or resolved in source_path.parents:
            raise refuse(
                f"the input {source_path.name!r} or a folder that holds it", "Write the report to a new folder."
            )
    if os.path.lexists(path):
        if not path.is_dir():
            raise refuse("a file", "Give a folder path: a file is never replaced.")
        if read_marker(path) is None:
            try:
                entries = sorted(os.listdir(path))
            except OSError as exc:
                raise refuse(f"a folder that cannot be listed ({exc.strerror})", "Give a new folder.") from None
            if entries:
                shown = ", ".join(repr(e) for e in entries[:3]) + (
                    f" and {len(entries) - 3} more" if len(entries) > 3 else ""
                )
                raise refuse(
                    f"a folder with other content ({shown})",
                    f"Give a new or empty folder: only a folder holding a previous report with its {MARKER} "
                    "marker and nothing else is replaced (delete an older report yourself).",
                )
        return path
    ancestor = path.absolute().parent
    while not os.path.lexists(ancestor):
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise refuse(f"a path inside the file {str(ancestor)!r}", "Give a folder path outside any file.")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise refuse(f"a path that cannot be created ({str(ancestor)!r} is not writable)", "Give a writable place.")
    return path


@dataclass
class OutputFolder:
    """A checked ``--out``: made (if new) before any data is read, and a report swapped into it crash-safely.

    Example:
        >>> import tempfile, torch
        >>> from lensdash.report import report
        >>> root = Path(tempfile.mkdtemp())
        >>> _ = (root / "p.csv").write_text("a,b,label\\n0.9,0.1,a\\n0.2,0.8,b\\n")
        >>> folder = OutputFolder.prepare(root / "out" / "report", inputs=[root / "p.csv"])
        >>> try:
        ...     paths = folder.commit(report(root / "p.csv", torch.eye(2)))
        ... finally:
        ...     folder.discard()
        >>> sorted(os.listdir(root / "out" / "report"))[:2]
        ['.lensdash-report.json', 'confusion.csv']
    """

    path: Path
    made: list[Path] = field(default_factory=list)  # folders this run created, outermost first
    committed: bool = False

    @classmethod
    def prepare(cls, out: str | os.PathLike, inputs: Iterable[str | os.PathLike] = ()) -> OutputFolder:
        """Check ``out`` (:func:`check_output_folder`) and make it and its missing parents, with the user's umask.

        Raises:
            InputError: as :func:`check_output_folder`, or the folder cannot be made.
        """
        path = check_output_folder(out, inputs)
        folder = cls(path)
        missing = []
        probe = path
        while not os.path.lexists(probe):
            missing.append(probe)
            probe = probe.parent
        try:
            if not missing:  # an existing folder: the new report is written beside it, so try that place now
                beside = path.parent / f".{path.name[:_NAME_KEEP]}.lensdash-new-{uuid.uuid4().hex}"
                os.mkdir(beside)
                os.rmdir(beside)
            for directory in reversed(missing):
                os.mkdir(directory)  # mode 0o777 less the umask, as mkdir(1)
                folder.made.append(directory)
        except OSError as exc:
            folder.discard()
            if exc.errno == errno.ENOTDIR:
                found = "a path inside a file"
            elif missing:
                found = "a path that cannot be created"
            else:
                found = "a folder beside which the new report cannot be written"
            raise InputError.build(
                _EXPECTED, f"{found} ({exc.strerror})", where=str(out), fix="Give a writable folder path."
            ) from None
        return folder

    def commit(self, report: Report) -> list[Path]:
        """Write ``report`` beside the target, swap it in, remove the old one; returns the paths written.

        Raises:
            InputError: the target changed during the run into something that must not be replaced.
            OSError: the files could not be written (the target is then left as it was).
        """
        ident = uuid.uuid4().hex
        new = self.path.parent / f".{self.path.name[:_NAME_KEEP]}.lensdash-new-{ident}"
        marker = {"format": MARKER_FORMAT, "id": ident, "pid": os.getpid(), "files": list(report.files)}
        os.mkdir(new)
        try:
            (new / MARKER).write_text(json.dumps(marker), encoding="utf-8")  # first: a half-written folder is ours
            report.write_files(new)
            with signals_deferred():
                self._swap_in(new, ident)
        except BaseException:
            with signals_deferred():
                remove_report(new)
            raise
        with signals_deferred():
            self._remove_leftovers()
        return [self.path / name for name in report.files]

    def _swap_in(self, new: Path, ident: str) -> None:
        old = read_marker(self.path)
        if os.path.lexists(self.path) and old is None:
            # It was checked before the data was read; whatever it became since is not ours to replace.
            check_output_folder(self.path)
        if not os.path.lexists(self.path):
            os.rename(new, self.path)
        elif exchange(new, self.path):
            remove_report(new)  # now the old report (or the empty folder)
        else:
            aside = self.path.parent / f".{self.path.name[:_NAME_KEEP]}.lensdash-old-{old['id'] if old else ident}"
            os.rename(self.path, aside)
            os.rename(new, self.path)
            remove_report(aside)
        self.committed = True

    def _remove_leftovers(self) -> None:
        """Remove what killed runs left beside the target, when it is provably theirs and they are gone."""
        parent = self.path.parent
        try:
            entries = os.listdir(parent)
        except OSError:
            return
        for entry in entries:
            match = _LEFTOVER.fullmatch(entry)
            if match is None or match["name"] != self.path.name[:_NAME_KEEP]:
                continue
            folder = parent / entry
            data = read_marker(folder)
            if data is None:
                with contextlib.suppress(OSError):
                    if not folder.is_symlink() and folder.is_dir():
                        folder.rmdir()  # only ever an empty folder
                continue
            if _alive(data.get("pid")):
                continue  # a run going on now
            remove_report(folder)

    def discard(self) -> None:
        """Unless a report was committed, remove the folders :meth:`prepare` made (each only if still empty)."""
        if self.committed:
            return
        for directory in reversed(self.made):
            with contextlib.suppress(OSError):
                directory.rmdir()
        self.made.clear()


def remove_report(folder: Path) -> bool:
    """Remove ``folder`` if it is provably a lensdash report (its listed files, its marker, then the folder) or empty.

    Never a recursive delete: a file that is not listed stops it (the folder is then left). Returns whether it went.
    """
    data = read_marker(folder)
    try:
        if data is not None:
            for name in data["files"]:
                (folder / name).unlink(missing_ok=True)
            (folder / MARKER).unlink()  # last, so that a removal cut short leaves a folder still provably ours
        folder.rmdir()
    except OSError:
        return False
    return True


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def _renameat2() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None


def exchange(first: Path, second: Path) -> bool:
    """Swap two existing paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``); ``False`` if unsupported."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(second))


@contextlib.contextmanager
def signals_deferred(*, deliver: bool = True) -> Iterator[None]:
    """Hold SIGINT and SIGTERM while a step that must not be cut runs; deliver the first one after it (or drop it).

    Python runs signal handlers in the main thread only, so swapping the handlers there holds them whichever
    thread the signal arrives on. Elsewhere (a worker thread) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    caught = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.getsignal(signum) for signum in caught}
    for signum in caught:
        signal.signal(signum, lambda received, _frame: pending.append(received))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        if pending and deliver:
            signal.raise_signal(pending[0])
