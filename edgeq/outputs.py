"""Where edgeq writes: output folders and files, so that the user's files stay the user's
(contract 6) and nothing is ever half-written (contract 5).

- An output folder is replaced only when it is empty, or when edgeq made it and nothing in it
  changed since: edgeq leaves a marker (MARKER: the command, edgeq's version, the date and a
  hash of every file it wrote). Anything else needs `force=True` (`--force`). Links, files where
  a folder is expected, the current folder and folders that hold an input are always refused.
- `check_output_folder` / `check_output_file` run before any work (the CLI calls them before
  TensorFlow is imported); `staged_folder` and `write_file` build beside the target and rename
  into place, and remove their temporary folder on any error or Ctrl-C.
- Files get the user's umask, like any other program's.

Standard library only: both halves (learn/ and deploy/) and the CLI use it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from edgeq import __version__
from edgeq.errors import EdgeqError, OutputError

MARKER = ".edgeq-output.json"
FORCE_HINT = "choose another --out, or pass --force to replace it and everything in it"


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _files(folder: Path) -> dict[str, Path]:
    """Every file below `folder` (links included, never followed), by relative path."""
    found = {}
    for root, dirs, names in os.walk(folder):
        for name in names + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            path = Path(root, name)
            found[path.relative_to(folder).as_posix()] = path
    return found


def _foreign_files(folder: Path) -> list[str]:
    """Files in an edgeq-made `folder` that edgeq did not write or that changed since."""
    try:
        written = json.loads((folder / MARKER).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return [MARKER]
    foreign = []
    for rel, path in _files(folder).items():
        if rel == MARKER:
            continue
        if path.is_symlink() or rel not in written or _hash(path) != written[rel]:
            foreign.append(rel)
    return sorted(foreign)


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_parent(path: Path, what: str) -> None:
    """The folder that will hold `path` exists (or can be made) and takes new files: probed
    with a real temporary folder, since permission bits do not tell (root, /proc, full disks)."""
    base = _nearest_existing(path.parent)
    if not base.is_dir():
        raise OutputError(f"{path}: {base} is a file, so the {what} cannot be created there",
                          "choose another --out")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".edgeq-probe-", dir=base))
    except OSError as e:
        raise OutputError(f"{path}: cannot write in {base} ({e.strerror or e})",
                          f"choose a writable place for the {what}") from None


def _inputs(inputs: Iterable) -> list[Path]:
    return [Path(i).resolve() for i in inputs if i is not None and Path(i).exists()]


def check_output_folder(out, force: bool = False, inputs: Iterable = ()) -> Path:
    """Raise OutputError unless `out` may become edgeq's output folder; returns it as a Path.

    inputs: the command's input paths (model, data...): the output may neither hold one nor
    lie inside an input folder, even with force."""
    out = Path(out)
    if out.is_symlink():
        raise OutputError(f"{out}: is a symbolic link (to {os.readlink(out)}); edgeq does not "
                          "replace links", "choose another --out, or name a real folder")
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: is a file, not a folder; edgeq does not replace it",
                          "choose another --out (a folder name)")
    where = out.resolve()
    cwd = Path.cwd().resolve()
    if where == cwd or where in cwd.parents:
        raise OutputError(f"{out}: is the current folder (or holds it); edgeq replaces its "
                          "output folder as a whole", "choose a new sub-folder, e.g. --out out")
    for source in _inputs(inputs):
        if source == where or where in source.parents:
            raise OutputError(f"{out}: holds the input {source}; replacing the folder would "
                              "delete it", "choose another --out")
        if source.is_dir() and source in where.parents:
            raise OutputError(f"{out}: is inside the input folder {source}",
                              "choose an --out outside your inputs")
    if out.is_dir() and not force:
        _check_replaceable(out)
    _check_parent(where, "output folder")
    return out


def _check_replaceable(out: Path) -> None:
    if not any(out.iterdir()):
        return
    if not (out / MARKER).is_file():
        raise OutputError(f"{out}: exists and was not made by edgeq (no {MARKER} in it); "
                          "edgeq replaces only empty folders and its own", FORCE_HINT)
    foreign = _foreign_files(out)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise OutputError(f"{out}: was made by edgeq, but {shown} changed or appeared since; "
                          "edgeq does not replace it", "move your files out first, or " + FORCE_HINT)


def check_output_file(path, inputs: Iterable = ()) -> Path:
    """Raise OutputError unless the file `path` can be written (an existing file is replaced,
    an input never); returns it as a Path."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; this option names the file to write",
                          "choose a file name, e.g. model.tflite")
    where = path.resolve()
    if where in _inputs(inputs):
        raise OutputError(f"{path}: is an input of this command; writing it would replace it",
                          "choose another output file name")
    _check_parent(where, "file")
    return path


def _marker(folder: Path, command: str | None) -> None:
    files = {rel: _hash(p) for rel, p in _files(folder).items() if not p.is_symlink()}
    made = {"made_by": "edgeq", "command": command or shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "edgeq_version": __version__, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "files": files}
    (folder / MARKER).write_text(json.dumps(made, indent=2) + "\n")


@contextmanager
def staged_folder(out, force: bool = False, inputs: Iterable = (),
                  command: str | None = None) -> Iterator[Path]:
    """Yield an empty temporary folder beside `out`; when the block ends without error, mark
    it as edgeq's and rename it to `out` (the previous `out` goes only after that). On any
    error, or Ctrl-C, the temporary folder is removed and `out` is as it was."""
    tmp = begin_folder(out, force, inputs)
    try:
        yield tmp
    except BaseException as e:
        raise abandon_folder(tmp, out, e) from None
    finish_folder(tmp, out, force, inputs, command)


def begin_folder(out, force: bool = False, inputs: Iterable = ()) -> Path:
    """The temporary folder beside `out` that finish_folder() renames to `out` (the two halves
    of staged_folder, for code that cleans up itself)."""
    out = check_output_folder(out, force, inputs)
    parent = out.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent))
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; outputs are ordinary folders
    except OSError as e:
        raise OutputError(f"{out}: cannot create the output folder ({e.strerror or e})",
                          "choose a writable --out") from None
    return tmp


def abandon_folder(tmp: Path, out, error: BaseException) -> BaseException:
    """Remove `tmp` after `error`; returns the error to raise, naming `out` (what the user
    chose) instead of the temporary folder."""
    shutil.rmtree(tmp, ignore_errors=True)
    if isinstance(error, OSError):
        error = _write_error(out, error)
    if isinstance(error, EdgeqError):
        for old in (str(tmp), str(tmp.resolve())):
            error.message = error.message.replace(old, str(out))
        error.args = (error.message,)
    return error


def finish_folder(tmp: Path, out, force: bool = False, inputs: Iterable = (),
                  command: str | None = None) -> None:
    """Mark `tmp` as edgeq's and rename it to `out`; `tmp` is gone afterwards, also on error."""
    out = Path(out)
    try:
        _marker(tmp, command)
        check_output_folder(out, force, inputs)  # the folder may have changed during the work
        _swap(tmp, out)
    except OSError as e:
        raise _write_error(out, e) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_error(out, e: OSError) -> OutputError:
    where = f": {e.filename}" if e.filename else ""
    return OutputError(f"{out}: cannot write the output ({e.strerror or e}{where})",
                       "free some space or choose another --out")


def _swap(tmp: Path, out: Path) -> None:
    """Renames only: at every moment either the old or the new folder is complete at `out`."""
    backup = None
    if out.exists():
        backup = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.rename(out, backup)
    try:
        os.rename(tmp, out)
    except BaseException:
        if backup is not None:
            os.rename(backup, out)
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


@contextmanager
def staged_file(path) -> Iterator[Path]:
    """Yield a temporary path (same name, in a private folder beside `path`) for writers that
    want a path (Keras' model.save, numpy, matplotlib); renamed to `path` when the block ends
    without error, removed otherwise."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    except OSError as e:
        raise OutputError(f"{path}: cannot write ({e.strerror or e})",
                          "choose a writable location") from None
    try:
        try:
            yield work / path.name
            os.replace(work / path.name, path)
        except OSError as e:
            raise OutputError(f"{path}: cannot write ({e.strerror or e})",
                              "free some space or choose a writable location") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def write_file(path, data: bytes | str) -> Path:
    """Write `data` to `path` atomically (a reader never sees half a file), with the umask."""
    with staged_file(path) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else bytes(data))
    return Path(path)
