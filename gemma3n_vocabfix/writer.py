"""Execute a plan: stream tensor bytes into a staged folder beside the output, then rename it into place.

Memory stays bounded: bytes move in chunks of at most CHUNK_BYTES (by the kernel where it can),
and the only arrays ever built are chunks of rows while new rows are computed (init_rows.py), plus for init "normal"
the covariance of a table of at most rows.FULL_COVARIANCE_MAX_COLUMNS columns.
"""

from __future__ import annotations

import errno
import fnmatch
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

from .checkpoint import RECORD_NAME
from .errors import OutputError
from .plan import FileOutput, Plan, ShardPlan, SourceBytes
from .rows import CopyRows, InitRows, PadRow, TablePlan
from .safetensors_header import encode_header

CHUNK_BYTES = 16 * 1024 * 1024
# copy_file_range moves bytes in the kernel, so its chunks cost no memory: large ones return to Python (and wait for
# the GIL while the tokenizer files are renumbered on a thread) less often
KERNEL_CHUNK_BYTES = 128 * 1024 * 1024
ProgressFn = Callable[[int], None]


STAGE_SUFFIX = ".vocabfix-partial"
STAGE_MARKER = ".vocabfix-stage"  # inside a stage folder: the pid that is writing it; never reaches OUT

# What `--force` may replace in a folder without vocabfix's record (or with one from before records listed their
# files): the top-level files of a checkpoint as save_pretrained or a Hub download leaves them ("*.safetensors": every
# shard). Anything else (a subfolder, notes, another model) is not ours to delete.
CHECKPOINT_FILES = (
    "config.json", "generation_config.json", "*.safetensors", "model.safetensors.index.json",
    "tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json", "added_tokens.json",
    "chat_template.jinja", "chat_template.json", "preprocessor_config.json", "processor_config.json",
    "README.md", ".gitattributes",
)


def write_plan(plan: Plan, dst: Path, *, force: bool = False, progress: ProgressFn | None = None,
               check: Callable[[Path], None] | None = None, link: bool = False) -> list[Path]:
    """Write `plan` to `dst`: every file into a hidden stage folder beside it, each flushed to disk (fsync), the
    folder flushed, then one rename, then the parent folder flushed: after a crash OUT is either absent or complete.
    The small files come first, then the shards, then the files of `plan.settle()` (the tokenizer files, renumbered
    on a thread meanwhile; what that raised is raised between shards or there).

    A stage folder left beside `dst` by a killed run (recognised by its marker, whose process is gone) is removed
    first; returns those removed. On any failure or interrupt the stage is removed and an existing `dst` (with
    `force`) is left as it was. `check(stage)` runs on the complete stage before the rename (`rewrite --verify`);
    what it raises removes the stage like any failure. `link`: a shard whose bytes do not change becomes a hard
    link to IN's (it shares storage with IN); otherwise unchanged files are cloned where the file system shares
    extents (FICLONE: btrfs, XFS), else copied. Raises OutputError for I/O errors (disk full, unwritable parent),
    naming the file, and for `link` across file systems.
    """
    progress = progress or (lambda n: None)
    if hasattr(progress, "start"):  # a progress display that wants the total before the first byte
        progress.start(plan.shard_bytes)
    stale = remove_stale_stages(dst)
    stage = _make_stage(dst)
    current = None  # the file being written: named when the error does not name one (ENOSPC, EIO from a write)
    flusher = FlushBehind()
    try:
        written = set()
        for f in list(plan.files):
            _write_file(plan, f, current := stage / f.name, flusher)
            written.add(f.name)
        for shard in plan.shards:
            plan.raise_if_failed()
            target = current = stage / shard.name
            target.parent.mkdir(parents=True, exist_ok=True)
            if shard.changed:
                _write_shard(shard, target, progress, flusher.flush)
            elif link:
                _link_file(shard.source.path, target)
                progress(shard.source.file_size)
            else:
                _copy_file(shard.source.path, target, progress, flusher.flush)
        plan.settle()  # the tokenizer files, renumbered while the shards were copied, join plan.files
        for f in [f for f in plan.files if f.name not in written]:
            _write_file(plan, f, current := stage / f.name, flusher)
        current = None
        flusher.wait()
        if check is not None:
            check(stage)
        (stage / STAGE_MARKER).unlink()
        _fsync_folders(stage)
        move_into_place(stage, dst, force, check_replaceable)
        _fsync_path(dst.parent)
    except OSError as e:  # disk full, I/O error, a file vanishing under us: nothing may be left behind
        current = flusher.failed or current
        _remove_stage(stage, flusher)
        if link and e.errno == errno.EXDEV:
            raise OutputError(f"{dst}: --link needs OUT on the same file system as IN (hard links cannot cross file "
                              "systems); nothing was written", hint="drop --link, or put OUT beside IN") from None
        raise writing_failed(dst, e, current.relative_to(stage) if current else None) from None
    except BaseException:
        _remove_stage(stage, flusher)
        raise
    return stale


def _write_file(plan: Plan, f: FileOutput, target: Path, flusher: FlushBehind) -> None:
    """Write (or copy) one file other than a shard to `target` in the stage."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if f.parts is None:
        _copy_file(plan.checkpoint.root / f.name, target, flush=flusher.flush)
    else:
        _write_parts(f.parts, target, flusher.flush)


def _remove_stage(stage: Path, flusher: FlushBehind) -> None:
    """After a failure or an interrupt: the stage first (a second signal while flushes are awaited leaves nothing
    behind), then the queued flushes dropped and the one running awaited."""
    try:
        shutil.rmtree(stage, ignore_errors=True)
    finally:
        flusher.close(cancel=True)


class FlushBehind:
    """Flush (fsync) each written file on a background thread while the next one is written, so the disk writes one
    file's data while the kernel copies the next (as `cp` followed by `sync` would, but per file).

    `flush(file)` queues a flush of an open file (a duplicate descriptor is kept, so the caller may close its own)
    and raises a failure of an earlier one at once; `wait()` returns once every queued file is on disk; both raise
    the first OSError with `failed` set to the file it came from (the kernel names none: ENOSPC or EIO reported at
    fsync). `close()` ends the thread and closes the descriptors, with `cancel` dropping flushes not yet begun."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vocabfix-fsync")
        self._queued: list[tuple[Path, int, Future]] = []
        self.failed: Path | None = None

    def flush(self, file: BinaryIO) -> None:
        self._raise_failure(finished_only=True)
        fd = os.dup(file.fileno())
        try:
            done = self._pool.submit(os.fsync, fd)
        except BaseException:
            os.close(fd)
            raise
        self._queued.append((Path(file.name), fd, done))

    def wait(self) -> None:
        try:
            self._raise_failure(finished_only=False)
        finally:
            self.close()

    def _raise_failure(self, finished_only: bool) -> None:
        for path, _, done in self._queued:
            if finished_only and not done.done():
                return
            try:
                done.result()
            except OSError:
                self.failed = path
                raise

    def close(self, cancel: bool = False) -> None:
        try:
            self._pool.shutdown(wait=True, cancel_futures=cancel)
        finally:
            for _, fd, _ in self._queued:
                os.close(fd)
            self._queued.clear()


def _fsync_file(file: BinaryIO) -> None:
    os.fsync(file.fileno())


def writing_failed(dst: Path, e: OSError, current: Path | str | None) -> OutputError:
    """The one-line error of a write that failed (its stage already removed): the OS's reason, the file (the error's
    own, else `current`, the one being written: ENOSPC and EIO from a write name none), and whether an existing OUT
    was kept. For every command that writes through a stage."""
    where = f" ({e.filename})" if e.filename else f" (writing {current})" if current else ""
    kept = "; the existing OUT was left as it was" if dst.exists() else ""
    return OutputError(f"{dst}: writing failed: {e.strerror or e}{where}; nothing was written{kept}",
                       hint="free space or fix the cause and run again")


def remove_stale_stages(dst: Path) -> list[Path]:
    """Stage folders beside `dst` that vocabfix made for a process that no longer runs: removed. Ours means a marker
    inside, or (a run killed before it wrote one) an empty folder; the pid is the marker's, else the name's."""
    removed = []
    for stage in dst.parent.glob(f".{_glob_escape(dst.name)}.*{STAGE_SUFFIX}") if dst.parent.is_dir() else ():
        marked = True
        try:
            pid = int((stage / STAGE_MARKER).read_text().strip())
        except ValueError:  # killed before the pid was written
            pid = _pid_in_name(stage)
        except OSError:  # no marker: not ours, or finished; only an empty folder of ours is removed (rmdir)
            pid, marked = _pid_in_name(stage), False
        if pid is None or _alive(pid):
            continue
        if marked:
            shutil.rmtree(stage, ignore_errors=True)
        elif not _removed_if_empty(stage):
            continue
        removed.append(stage)
    return removed


def _pid_in_name(stage: Path) -> int | None:
    """The pid _make_stage put in a stage folder's name (`.OUT.PID-RANDOM.vocabfix-partial`), if any."""
    pid, sep, _ = stage.name.removesuffix(STAGE_SUFFIX).rpartition(".")[2].partition("-")
    return int(pid) if sep and pid.isascii() and pid.isdigit() else None


def _removed_if_empty(folder: Path) -> bool:
    try:
        folder.rmdir()
    except OSError:
        return False
    return True


def _glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):  # OverflowError: no pid of this system: not ours, kept
        return True
    return True


def _make_stage(dst: Path) -> Path:
    """The hidden folder beside OUT that becomes OUT, with a marker naming this process. Made with mkdir, so its
    mode follows the umask as save_pretrained's folders do (tempfile.mkdtemp's 0700 would hide the checkpoint from
    other users)."""
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        # the pid in the name too: a run killed between mkdir and the marker's write leaves it to be cleaned up
        stage = dst.parent / f".{dst.name}.{os.getpid()}-{secrets.token_hex(4)}{STAGE_SUFFIX}"
        stage.mkdir()
        (stage / STAGE_MARKER).write_text(f"{os.getpid()}\n")
    except OSError as e:
        where = f" ({e.filename})" if e.filename else ""
        raise OutputError(f"{dst}: cannot create the output folder: {e.strerror or e}{where}",
                          hint="OUT's parent must be a writable folder") from None
    return stage


def _copy_file(src: Path, target: Path, progress: ProgressFn = lambda n: None,
               flush: Callable[[BinaryIO], None] = _fsync_file) -> None:
    """A copy of `src`, flushed (by `flush`: fsync now, or FlushBehind.flush): cloned (shared extents, no bytes
    moved) where the file system can, else copied by the kernel (copy_file_range) in chunks, `progress` told after
    each."""
    with open(src, "rb") as inp, open(target, "wb", buffering=0) as out:
        size = os.fstat(inp.fileno()).st_size
        if _clone(inp, out):
            progress(size)
        else:
            _copy_range(inp, out, 0, size, progress)
        flush(out)


FICLONE = 0x40049409  # linux/fs.h: _IOW(0x94, 9, int)


def _clone(inp: BinaryIO, out: BinaryIO) -> bool:
    """Make `out` share `inp`'s extents (btrfs, XFS, ...); False where the file system cannot (ext4, tmpfs,
    another file system, not Linux), and the caller copies."""
    try:
        import fcntl
        fcntl.ioctl(out.fileno(), FICLONE, inp.fileno())
    except (ImportError, OSError):
        return False
    return True


def _link_file(src: Path, target: Path) -> None:
    """`target` as a hard link to `src` (a symlink, as in the Hub cache, is followed to its blob), flushed."""
    os.link(src, target, follow_symlinks=True)
    _fsync_path(target)


def _fsync_path(path: Path) -> None:
    """Flush a file's (or a folder's entries') data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folders(root: Path) -> None:
    for folder, _, _ in os.walk(root):
        _fsync_path(Path(folder))


def _write_parts(parts: list[bytes | SourceBytes], target: Path, flush: Callable[[BinaryIO], None]) -> None:
    with open(target, "wb", buffering=0) as out:
        for part in parts:
            if isinstance(part, SourceBytes):
                with open(part.path, "rb") as src:
                    _copy_range(src, out, part.start, part.stop - part.start, lambda n: None)
            else:
                _write_all(out, part)
        flush(out)


def move_into_place(stage: Path, dst: Path, force: bool, replaceable: Callable[[Path], None]) -> None:
    """Rename a finished stage folder to OUT (for every command that writes a folder). With --force an old OUT is
    checked again by `replaceable` (files put into OUT while this run wrote are not deleted either), moved aside,
    and deleted only once the new one is in place; if that rename fails, the old OUT is put back before the error
    propagates. Raises OutputError for an existing OUT without `force`."""
    if not dst.exists():
        os.rename(stage, dst)
        return
    if not force:
        raise OutputError(f"{dst} already exists", hint="pass --force to replace it")
    replaceable(dst)
    aside = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".vocabfix-old", dir=dst.parent))
    old = aside / "replaced"
    os.rename(dst, old)
    try:
        os.rename(stage, dst)
    except BaseException:
        os.rename(old, dst)
        os.rmdir(aside)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def check_replaceable(dst: Path) -> None:
    """Raise OutputError unless `--force` may replace the existing `dst`: a folder vocabfix wrote (every entry, at
    any depth, a file its vocabfix.json lists under "files") or a folder of checkpoint files only (CHECKPOINT_FILES,
    top level; also for a record without "files" or one that cannot be read). An empty folder qualifies."""
    if not dst.is_dir() or dst.is_symlink():
        what = "a symbolic link" if dst.is_symlink() else "not a folder"
        raise OutputError(f"{dst} exists and is {what}", hint="name a new folder for OUT")
    try:
        listed = _recorded_files(dst)
        unexpected = _not_checkpoint_files(dst) if listed is None else _not_listed(dst, "", listed)
    except OSError as e:
        raise OutputError(f"{dst}: cannot list what it holds: {e.strerror or e}",
                          hint="name a new folder for OUT") from None
    if unexpected:
        more = f" and {len(unexpected) - 3} more" if len(unexpected) > 3 else ""
        raise OutputError(f"{dst} holds {', '.join(unexpected[:3])}{more} that vocabfix did not write: --force only "
                          "replaces a folder vocabfix wrote (every file listed in its vocabfix.json) or a checkpoint "
                          "folder with nothing else in it", hint="name a new folder for OUT, or move those files away")


def _recorded_files(dst: Path) -> set[str] | None:
    """The "files" of dst's vocabfix.json; None without a readable record that lists them."""
    try:
        record = json.loads((dst / RECORD_NAME).read_bytes())
    except (OSError, ValueError):
        return None
    files = record.get("files") if isinstance(record, dict) else None
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        return None
    return set(files)


def _not_checkpoint_files(dst: Path) -> list[str]:
    allowed = (*CHECKPOINT_FILES, RECORD_NAME)
    return [e.name + ("/" if e.is_dir(follow_symlinks=False) else "") for e in _entries(dst)
            if not (e.is_file(follow_symlinks=False) and any(fnmatch.fnmatchcase(e.name, p) for p in allowed))]


def _not_listed(folder: Path | str, rel: str, listed: set[str]) -> list[str]:
    """Entries below `folder` (relative names, a folder with nothing listed in it as one "name/") not in `listed`."""
    out = []
    for e in _entries(folder):
        name = rel + e.name
        if e.is_dir(follow_symlinks=False):
            inside = any(f.startswith(name + "/") for f in listed)
            out += _not_listed(e.path, name + "/", listed) if inside else [name + "/"]
        elif not (e.is_file(follow_symlinks=False) and name in listed):
            out.append(name)
    return out


def _entries(folder: Path | str) -> list[os.DirEntry]:
    with os.scandir(folder) as it:
        return sorted(it, key=lambda e: e.name)


def _write_shard(shard: ShardPlan, target: Path, progress: ProgressFn, flush: Callable[[BinaryIO], None]) -> None:
    with open(shard.source.path, "rb") as src, open(target, "wb", buffering=0) as out:
        _write_all(out, encode_header(shard.out_tensors(), shard.metadata))
        for tensor in shard.source.tensors:
            table = shard.tables.get(tensor.name)
            if table is None:
                _copy_range(src, out, tensor.start, tensor.nbytes, progress)
            else:
                _write_table(src, out, table, progress)
        flush(out)


def _write_table(src: BinaryIO, out: BinaryIO, table: TablePlan, progress: ProgressFn) -> None:
    row_bytes = table.source.row_bytes
    maker = None
    for seg in table.segments:
        if isinstance(seg, CopyRows):
            _copy_range(src, out, table.source.start + seg.first_row * row_bytes, seg.count * row_bytes, progress)
        elif isinstance(seg, PadRow):
            src.seek(table.source.start)
            _repeat_row(out, src.read(row_bytes), seg.count, progress)
        elif isinstance(seg, InitRows):
            from .init_rows import RowMaker, from_float  # numpy: imported only by a rewrite that makes rows
            maker = maker or RowMaker(table, table_reader(src, table))
            for values in maker.rows(seg):
                data = from_float(values, table.source.dtype)
                _write_all(out, data)
                progress(len(data))


def table_reader(src: BinaryIO, table: TablePlan):
    """read(first, count): `count` input rows of the table from `first` on, as float32 (float64 for F64)."""
    from .init_rows import to_float
    info = table.source

    def read(first: int, count: int):
        src.seek(info.start + first * info.row_bytes)
        return to_float(src.read(count * info.row_bytes), info.dtype).reshape(count, -1)
    return read


def _copy_range(src: BinaryIO, out: BinaryIO, offset: int, length: int, progress: ProgressFn) -> None:
    done = 0
    while done < length:
        try:
            copied = _kernel_copy(src.fileno(), out.fileno(), min(KERNEL_CHUNK_BYTES, length - done), offset + done)
        except OSError:  # not supported across these file systems (or not Linux): plain reads and writes
            src.seek(offset + done)
            copied = _write_all(out, src.read(min(CHUNK_BYTES, length - done)))
        if copied <= 0:
            raise OSError(f"short copy from {src.name} at byte {offset + done}")
        done += copied
        progress(copied)


def _kernel_copy(src_fd: int, out_fd: int, count: int, offset: int) -> int:
    """copy_file_range where the OS has it (Linux); elsewhere OSError, and the caller reads and writes."""
    copy = getattr(os, "copy_file_range", None)
    if copy is None:
        raise OSError("copy_file_range is not available")
    return copy(src_fd, out_fd, count, offset)


def _write_all(out: BinaryIO, data: bytes) -> int:
    view = memoryview(data)
    while view:
        view = view[out.write(view):]
    return len(data)


def _repeat_row(out: BinaryIO, row: bytes, count: int, progress: ProgressFn) -> None:
    per_chunk = max(1, CHUNK_BYTES // max(1, len(row)))
    while count:
        n = min(per_chunk, count)
        _write_all(out, row * n)
        progress(len(row) * n)
        count -= n
