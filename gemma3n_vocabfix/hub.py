"""Checkpoints on the Hugging Face Hub: resolve `org/name` (+ revision), read it without its weights, push one.

Everything goes through huggingface_hub, imported only when a repo id is used, so its cache
(`HF_HUB_CACHE` / `HF_HOME`), `HF_HUB_OFFLINE`, `HF_ENDPOINT` and `HF_TOKEN` are honoured as in any other tool:
- the small files (configs, tokenizer files, the weights index) come through `snapshot_download(allow_patterns=...)`;
- the file list with sizes comes from the tree listing huggingface_hub caches beside the snapshot;
- each shard header comes through `HfApi.parse_safetensors_file_metadata` (HTTP range requests: no weights are
  downloaded), unless the shard is already in the cache, whose header is read from disk. This is the helper
  `get_safetensors_metadata` calls per shard; calling it per shard lets `inspect` also see shards the index does
  not name and report a missing shard as a finding instead of failing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .checkpoint import (
    INDEX_NAME,
    JSON_TOKENIZER_FILES,
    RECORD_NAME,
    SENTENCEPIECE_FILE,
    SINGLE_NAME,
    Checkpoint,
    RemoteFiles,
    read_checkpoint,
    read_json,
)
from .errors import CheckpointError, HubError, UsageError, VocabfixError
from .safetensors_header import ShardHeader, shard_header

# What `inspect` downloads: every file it reads except the shards.
SMALL_FILES = ("config.json", "generation_config.json", *JSON_TOKENIZER_FILES, SENTENCEPIECE_FILE, INDEX_NAME,
               RECORD_NAME)
_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
REPO_ID = re.compile(rf"^{_NAME}/{_NAME}$")
LOGIN_HINT = "for a private or gated repo, log in with 'hf auth login' or set HF_TOKEN"


@dataclass(frozen=True)
class Source:
    """A checkpoint as the user named it: a local folder, or a Hub repo id at a revision."""

    text: str
    path: Path | None = None
    repo_id: str | None = None
    revision: str | None = None

    @property
    def is_hub(self) -> bool:
        return self.repo_id is not None


def is_repo_id(text: str) -> bool:
    return bool(REPO_ID.match(text)) and ".." not in text and "--" not in text


def resolve_source(text: str, revision: str | None = None) -> Source:
    """An existing path is a folder; otherwise `org/name` is a Hub repo id. Anything else is an error."""
    path = Path(text).expanduser()
    if path.exists():
        if revision is not None:
            raise UsageError(f"{text} is a local folder; --revision only applies to a Hub repo id",
                                hint="drop --revision, or name the repo as org/name")
        return Source(text, path=path)
    if is_repo_id(text):
        return Source(text, repo_id=text, revision=revision)
    raise CheckpointError(f"{text}: not a folder, and not a Hub repo id (org/name)",
                          hint="pass a checkpoint folder as saved by save_pretrained, or a Hub repo id")


def read_source(source: Source, merges: bool = False) -> Checkpoint:
    """The checkpoint at `source`, as inspect needs it: from the Hub without its weights, and (unless `merges`)
    without tokenizer.json's BPE merges."""
    if not source.is_hub:
        return read_checkpoint(source.path, merges=merges)
    return read_hub_checkpoint(source.repo_id, source.revision, merges=merges)


# --- reading from the Hub ------------------------------------------------------------------------------------------


def _hub():
    import huggingface_hub
    return huggingface_hub


@contextmanager
def hub_errors(repo_id: str, revision: str | None = None, what: str = "") -> Iterator[None]:
    """Turn huggingface_hub's exceptions into one-line VocabfixErrors."""
    from huggingface_hub import constants, errors
    rev = f" at revision {revision!r}" if revision else ""
    where = f"{repo_id}{rev}" + (f" ({what})" if what else "")
    try:
        yield
    except VocabfixError:
        raise
    except errors.GatedRepoError:
        raise HubError(f"{where}: the repo is gated", hint="accept its conditions on the Hub, then " + LOGIN_HINT) \
            from None
    except errors.RepositoryNotFoundError:
        raise HubError(f"{where}: no such repo on the Hub ({constants.ENDPOINT})", hint=LOGIN_HINT) from None
    except errors.RevisionNotFoundError:
        raise HubError(f"{where}: no such revision", hint="name a branch, tag or commit of the repo") from None
    except errors.RemoteEntryNotFoundError as e:
        raise HubError(f"{where}: a file is missing on the Hub ({_first_line(e)})") from None
    except (errors.LocalEntryNotFoundError, errors.OfflineModeIsEnabled) as e:
        reason = "HF_HUB_OFFLINE is set" if constants.is_offline_mode() else "the Hub cannot be reached"
        raise HubError(f"{where}: not in the Hub cache ({constants.HF_HUB_CACHE}) and {reason}",
                       hint=f"run once with network access (or 'hf download {repo_id}') to fill the cache"
                       + (f"; {_first_line(e)}" if not isinstance(e, errors.OfflineModeIsEnabled) else "")) from None
    except errors.SafetensorsParsingError as e:
        raise HubError(f"{where}: {_first_line(e)}") from None
    except errors.HfHubHTTPError as e:
        status = getattr(getattr(e, "response", None), "status_code", "?")
        raise HubError(f"{where}: the Hub answered HTTP {status}: {_first_line(e)}", hint=LOGIN_HINT) from None
    except OSError as e:
        raise HubError(f"{where}: {type(e).__name__}: {_first_line(e)}") from None
    except Exception as e:  # httpx2 transport errors (connect, timeout) have no common base with the above
        if type(e).__module__.split(".")[0] not in ("httpx2", "httpx", "httpcore"):
            raise
        raise HubError(f"{where}: cannot reach the Hub at {constants.ENDPOINT} ({type(e).__name__}: "
                       f"{_first_line(e)})", hint="check the network, or set HF_HUB_OFFLINE=1 to use the cache") \
            from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def read_hub_checkpoint(repo_id: str, revision: str | None = None, merges: bool = True) -> Checkpoint:
    """config, tokenizer files and index from the Hub (or its cache); shard headers by range requests."""
    hf = _hub()
    with hub_errors(repo_id, revision):
        folder = Path(hf.snapshot_download(repo_id, revision=revision, allow_patterns=list(SMALL_FILES),
                                           tqdm_class=_silent_tqdm()))
    commit = folder.name
    sizes, complete = _repo_files(repo_id, commit, folder)
    if not complete:  # no tree listing (an old cache): a shard the index names may exist without being cached
        for name in _shard_names(folder, sizes):
            sizes.setdefault(name, None)
    if not (folder / "config.json").is_file():
        raise CheckpointError(f"{repo_id}@{commit[:12]}: no config.json in the repo",
                              hint="a Gemma 3n checkpoint saved with save_pretrained has one")
    headers = _RemoteHeaders(repo_id, commit, folder, sizes)
    headers.prefetch(_shard_names(folder, sizes))
    remote = RemoteFiles(sizes=sizes, read_header=headers.get, label=f"{repo_id}@{commit[:12]}",
                         read_range=headers.read_range)
    return read_checkpoint(folder, remote=remote, merges=merges)


def _silent_tqdm():
    """huggingface_hub's tqdm, always disabled: no progress bars for the few small files inspect downloads."""
    from huggingface_hub.utils import tqdm

    class Silent(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return Silent


def _repo_files(repo_id: str, commit: str, folder: Path) -> tuple[dict[str, int | None], bool]:
    """Every file of the repo at `commit` with its size, and whether the list is complete: the tree listing
    huggingface_hub caches beside the snapshot, else only what the snapshot folder holds."""
    from huggingface_hub import errors, get_cached_repo_tree
    sizes: dict[str, int | None] = {}
    complete = True
    try:
        for f in get_cached_repo_tree(repo_id, revision=commit):
            sizes[f.path] = f.size
    except errors.CachedRepoTreeNotFoundError:
        complete = False
    for p in folder.rglob("*"):
        if p.is_file():
            sizes.setdefault(p.relative_to(folder).as_posix(), p.stat().st_size)
    return sizes, complete


def _shard_names(folder: Path, sizes: dict[str, int | None]) -> list[str]:
    if (folder / INDEX_NAME).is_file():
        weight_map = read_json(folder / INDEX_NAME).get("weight_map")
        if isinstance(weight_map, dict):
            return sorted({n for n in weight_map.values() if isinstance(n, str)})
        return []
    return [SINGLE_NAME] if SINGLE_NAME in sizes else []


class _RemoteHeaders:
    """Shard headers of a Hub repo: from the cache when the shard is there, else by range requests."""

    def __init__(self, repo_id: str, commit: str, folder: Path, sizes: dict[str, int | None]):
        self.repo_id, self.commit, self.folder, self.sizes = repo_id, commit, folder, sizes
        self.cache: dict[str, ShardHeader] = {}

    def prefetch(self, names: list[str]) -> None:
        todo = [n for n in names if n in self.sizes and not (self.folder / n).is_file()]
        if len(todo) > 1:
            with ThreadPoolExecutor(max_workers=min(8, len(todo))) as pool:
                for name, header in zip(todo, pool.map(self._fetch, todo), strict=True):
                    self.cache[name] = header

    def get(self, name: str) -> ShardHeader:
        if name not in self.cache:
            self.cache[name] = self._fetch(name)
        return self.cache[name]

    def _fetch(self, name: str) -> ShardHeader:
        from huggingface_hub import HfApi, constants
        if constants.is_offline_mode():
            raise HubError(f"{self.repo_id}@{self.commit[:12]}: the header of {name} is not in the Hub cache and "
                           "HF_HUB_OFFLINE is set", hint="unset HF_HUB_OFFLINE to read it by a range request "
                           "(no weights are downloaded)")
        with hub_errors(self.repo_id, self.commit[:12], f"header of {name}"):
            meta = HfApi().parse_safetensors_file_metadata(self.repo_id, name, revision=self.commit)
        return shard_header_from_metadata(self.folder / name, meta, self.sizes.get(name))


    def read_range(self, name: str, start: int, stop: int) -> bytes:
        """Bytes [start, stop) of a repo file, by one HTTP range request (what `verify` reads a Hub input with)."""
        from huggingface_hub import constants, hf_hub_url
        from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status
        if stop <= start:
            return b""
        if constants.is_offline_mode():
            raise HubError(f"{self.repo_id}@{self.commit[:12]}: {name} is not in the Hub cache and HF_HUB_OFFLINE "
                           "is set", hint=f"unset HF_HUB_OFFLINE, or 'hf download {self.repo_id}' first")
        with hub_errors(self.repo_id, self.commit[:12], f"bytes of {name}"):
            url = hf_hub_url(self.repo_id, name, revision=self.commit)
            response = get_session().get(url, headers={**build_hf_headers(), "range": f"bytes={start}-{stop - 1}"})
            hf_raise_for_status(response)
            data = response.content
        if len(data) != stop - start:
            raise HubError(f"{self.repo_id}@{self.commit[:12]}: asked for {stop - start} bytes of {name} at "
                           f"{start}, the Hub answered {len(data)}")
        return data


def shard_header_from_metadata(path: Path, meta, file_size: int | None) -> ShardHeader:
    """A ShardHeader from huggingface_hub's SafetensorsFileMetadata, validated like a local header.

    The metadata does not give the header length; a safetensors file ends with its data, so the data starts at
    `file_size - end of the last tensor` when the file size is known (it is, from the tree listing).
    """
    entries = {name: {"dtype": t.dtype, "shape": list(t.shape), "data_offsets": list(t.data_offsets)}
               for name, t in meta.tensors.items()}
    data_end = max((e["data_offsets"][1] for e in entries.values()), default=0)
    if file_size is not None and file_size >= data_end + 8:
        data_start = file_size - data_end
    else:
        data_start, file_size = 8, 8 + data_end
    return shard_header(path, meta.metadata, entries, data_start, file_size)


# --- rewrite from / to the Hub ---------------------------------------------------------------------------------


def download_snapshot(repo_id: str, revision: str | None = None, progress: bool = True) -> Path:
    """Every file of the repo (a rewrite copies them all), through the Hub cache."""
    hf = _hub()
    kwargs = {} if progress else {"tqdm_class": _silent_tqdm()}
    with hub_errors(repo_id, revision):
        return Path(hf.snapshot_download(repo_id, revision=revision, **kwargs))


@dataclass(frozen=True)
class PushPlan:
    repo_id: str
    folder: Path
    private: bool
    commit_message: str
    commit_description: str


def plan_push(report, folder: Path, repo_id: str, *, private: bool, source: str) -> PushPlan:
    """What `push` uploads: `folder` to `repo_id` in one commit whose message says what `report` changed."""
    from .render import commit_message
    if not is_repo_id(repo_id):
        raise UsageError(f"--push-to-hub {repo_id!r} is not a Hub repo id", hint="use org/name")
    title, description = commit_message(report, source)
    return PushPlan(repo_id, Path(folder), private, title, description)


def push(plan: PushPlan) -> str:
    """Create the repo if needed and upload the folder in one commit; returns the commit URL."""
    from huggingface_hub import HfApi
    api = HfApi()
    with hub_errors(plan.repo_id, what="push"):
        api.create_repo(plan.repo_id, private=True if plan.private else None, exist_ok=True)
        info = api.upload_folder(folder_path=str(plan.folder), repo_id=plan.repo_id,
                                 commit_message=plan.commit_message, commit_description=plan.commit_description)
    return str(getattr(info, "commit_url", info))
