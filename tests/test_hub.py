"""Hub repo ids: resolution, reading from a Hub cache offline, and a fake Hub served over HTTP on localhost.

The fake Hub (FakeHub below) answers the endpoints huggingface_hub 2.4 calls: repo info, the recursive tree
listing, HEAD/GET (with Range) on `/{repo}/resolve/{revision}/{file}`, and for a push: repo creation, README
validation, preupload (every file "regular") and the ndjson commit. It logs every request, so a test can check that
inspect never fetched tensor bytes. The CLI runs in a subprocess with HF_ENDPOINT pointing at it (huggingface_hub
reads HF_ENDPOINT at import). Nothing here can reach the internet: the subprocess environment is built from scratch.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fixtures.helpers import COLUMNS, ROOT, SHARD2, A, T, V, lines, run_cli
from fixtures.oracle import DocLayout
from fixtures.synthetic import build
from typer.testing import CliRunner

from gemma3n_vocabfix import cli, rewrite_checkpoint
from gemma3n_vocabfix.errors import VocabfixError
from gemma3n_vocabfix.hub import is_repo_id, plan_push, resolve_source
from gemma3n_vocabfix.render import commit_message

NEW = ["<new_a>", "<new_b>", "domainword"]
IDS = DocLayout(T, V, A, len(NEW))
runner = CliRunner()


# --- resolution -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, ok", [("google/gemma-3n-E4B-it", True), ("org/name.v2", True), ("name", False),
                                      ("a/b/c", False), ("./x", False), ("/abs/x", False), ("org/..", False),
                                      ("org/-x", False), ("org/a--b", False), ("org/", False)])
def test_repo_id_syntax(text: str, ok: bool) -> None:
    assert is_repo_id(text) is ok


def test_an_existing_folder_wins_over_a_repo_id(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "org" / "name").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert resolve_source("org/name").path == Path("org/name")
    assert resolve_source("org/other").repo_id == "org/other"
    with pytest.raises(VocabfixError, match="--revision"):
        resolve_source("org/name", revision="main")
    with pytest.raises(VocabfixError, match="not a folder, and not a Hub repo id"):
        resolve_source("./missing")


# --- a Hub cache laid out the way huggingface_hub lays it out, read offline ----------------------------------------


def fill_cache(cache: Path, repo_id: str, src: Path, commit: str, *, only: set[str] | None = None,
               tree: bool = True, ref: str = "main") -> Path:
    """models--org--name/{blobs/<etag>, snapshots/<commit>/<file> -> ../../blobs/<etag>, refs/<ref>, trees/}."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / ref).write_text(commit)
    snapshot = repo / "snapshots" / commit
    files = {}
    for path in sorted(src.rglob("*")):
        if not path.is_file():
            continue
        name = path.relative_to(src).as_posix()
        data = path.read_bytes()
        files[name] = data
        if only is not None and name not in only:
            continue
        etag = hashlib.sha256(data).hexdigest()
        blob = repo / "blobs" / etag
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    if tree:
        (repo / "trees").mkdir(exist_ok=True)
        entries = {n: {"size": len(d), "blob_id": hashlib.sha1(d).hexdigest()} for n, d in files.items()}
        (repo / "trees" / f"{commit}.json").write_text(json.dumps({"format_version": 1, "files": entries}))
    return snapshot


@pytest.fixture
def offline_cache(tmp_path: Path, monkeypatch) -> Path:
    from huggingface_hub import constants
    cache = tmp_path / "hub-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(cli.out(), "width", 200)
    return cache


COMMIT = "0123456789abcdef0123456789abcdef01234567"
SMALL = {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "tokenizer.model",
         "added_tokens.json", "special_tokens_map.json", "model.safetensors.index.json"}


def test_offline_cache_repo_id(offline_cache: Path, tmp_path: Path) -> None:
    src = build(tmp_path / "ext", text=T, vision=V, audio=A, new_tokens=NEW)
    fill_cache(offline_cache, "org/ext", src, COMMIT)
    result = runner.invoke(cli.app, ["inspect", "org/ext", "--json"])
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert data["source"] == f"org/ext@{COMMIT[:12]}"
    assert {"VF001", "VF004"} <= {f["code"] for f in data["findings"]}
    assert next(f for f in data["findings"] if f["code"] == "VF001")["fix"] == \
        "vocabfix rewrite org/ext ./ext-vocabfix"
    # a revision resolves through refs/ (branch) or directly (commit)
    assert runner.invoke(cli.app, ["inspect", "org/ext", "--revision", COMMIT, "--json"]).exit_code == 1
    text = runner.invoke(cli.app, ["inspect", "org/ext"]).stdout
    assert f"org/ext@{COMMIT[:12]}" in text and "VF001" in text


def test_offline_cache_rewrite_reads_the_snapshot(offline_cache: Path, tmp_path: Path) -> None:
    src = build(tmp_path / "ext", text=T, vision=V, audio=A, new_tokens=NEW)
    fill_cache(offline_cache, "org/ext", src, COMMIT, tree=False)
    result = runner.invoke(cli.app, ["rewrite", "org/ext", str(tmp_path / "fixed"), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["changed"] and data["source_repo"]["resolved"] == f"org/ext@{COMMIT[:12]}"
    assert runner.invoke(cli.app, ["inspect", str(tmp_path / "fixed"), "--strict"]).exit_code == 0


def _main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["vocabfix", *args])
    with pytest.raises(SystemExit) as e:
        cli.main()
    out, err = capsys.readouterr()
    return e.value.code, out, err


def test_offline_without_the_shards_is_exit_2(offline_cache: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    src = build(tmp_path / "ext", text=T, vision=V, audio=A, new_tokens=NEW)
    fill_cache(offline_cache, "org/ext", src, COMMIT, only=SMALL)  # what an earlier online inspect leaves
    code, out, err = _main(monkeypatch, capsys, "inspect", "org/ext")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert "HF_HUB_OFFLINE" in err and "model-0000" in err
    # an older cache without the tree listing: the shards are unknown, not missing
    fill_cache(offline_cache, "org/old", src, COMMIT, only=SMALL, tree=False)
    code, out, err = _main(monkeypatch, capsys, "inspect", "org/old")
    assert code == 2 and "HF_HUB_OFFLINE" in err, err
    code, out, err = _main(monkeypatch, capsys, "inspect", "org/not-cached")
    assert code == 2 and "not in the Hub cache" in err and len(err.strip().splitlines()) == 1, err


# --- a fake Hub over HTTP ---------------------------------------------------------------------------------------


class FakeHub:
    """Repos held in memory: repo_id -> {"commit", "files", "private"}; pushes add commits."""

    def __init__(self):
        self.repos: dict[str, dict] = {}
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Range header)
        self.commits: list[dict] = []
        self.created: list[dict] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, repo_id: str, folder: Path, commit: str = COMMIT, skip: tuple[str, ...] = ()) -> None:
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
                 if p.is_file() and p.relative_to(folder).as_posix() not in skip}
        self.repos[repo_id] = {"commit": commit, "files": files, "private": False}

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, status: int, body: bytes = b"", headers: dict | None = None, head: bool = False):
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, str(v))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _json(self, obj, status: int = 200):
                self._send(status, json.dumps(obj).encode(), {"Content-Type": "application/json"})

            def _error(self, status: int, code: str, commit: str | None = None):
                headers = {"X-Error-Code": code, "X-Error-Message": code, "Content-Type": "application/json"}
                if commit:
                    headers["X-Repo-Commit"] = commit
                self._send(status, json.dumps({"error": code}).encode(), headers, head=self.command == "HEAD")

            def _repo(self, repo_id: str, rev: str):
                repo = hub.repos.get(repo_id)
                if repo is None:
                    self._error(404, "RepoNotFound")
                    return None
                if rev not in ("main", repo["commit"]):
                    self._error(404, "RevisionNotFound")
                    return None
                return repo

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_HEAD(self):
                self.do_GET(head=True)

            def do_GET(self, head: bool = False):
                path = self.path.split("?")[0]
                hub.requests.append((self.command, path, self.headers.get("Range")))
                if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/revision/([^/]+)", path):
                    if repo := self._repo(m[1], m[2]):
                        self._json({"id": m[1], "modelId": m[1], "sha": repo["commit"], "private": repo["private"],
                                    "siblings": [{"rfilename": n} for n in repo["files"]]})
                elif m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)(/.*)?", path):
                    if repo := self._repo(m[1], m[2]):
                        self._json([{"type": "file", "path": n, "size": len(d), "oid": hashlib.sha1(d).hexdigest()}
                                    for n, d in repo["files"].items()])
                elif m := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
                    repo = self._repo(m[1], m[2])
                    if repo is None:
                        return
                    data = repo["files"].get(m[3])
                    if data is None:
                        self._error(404, "EntryNotFound", repo["commit"])
                        return
                    headers = {"X-Repo-Commit": repo["commit"], "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                               "Accept-Ranges": "bytes"}
                    rng = self.headers.get("Range")
                    if rng and not head:
                        a, b = re.fullmatch(r"bytes=(\d+)-(\d*)", rng).groups()
                        a, b = int(a), min(int(b) if b else len(data) - 1, len(data) - 1)
                        headers["Content-Range"] = f"bytes {a}-{b}/{len(data)}"
                        self._send(206, data[a:b + 1], headers)
                    else:
                        self._send(200, data, headers, head=head)
                else:
                    self._error(404, "NotFound")

            def do_POST(self):
                path = self.path.split("?")[0]
                body = self._body()
                hub.requests.append(("POST", path, None))
                if path == "/api/repos/create":
                    payload = json.loads(body)
                    repo_id = f"{payload['organization']}/{payload['name']}"
                    hub.created.append(payload)
                    if repo_id in hub.repos:
                        self._json({"error": "You already created this model repo"}, 409)
                        return
                    hub.repos[repo_id] = {"commit": "0" * 40, "files": {},
                                          "private": payload.get("visibility") == "private"}
                    self._json({"url": f"{hub.endpoint}/{repo_id}"})
                elif path == "/api/validate-yaml":
                    self._json({"errors": [], "warnings": []})
                elif m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/preupload/([^/]+)", path):
                    if self._repo(m[1], m[2]):
                        files = json.loads(body)["files"]
                        self._json({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                              for f in files]})
                elif m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/commit/([^/]+)", path):
                    repo = self._repo(m[1], m[2])
                    if repo is None:
                        return
                    records = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
                    header = next(x["value"] for x in records if x["key"] == "header")
                    added = {x["value"]["path"]: base64.b64decode(x["value"]["content"])
                             for x in records if x["key"] == "file"}
                    repo["files"].update(added)
                    repo["commit"] = hashlib.sha1(json.dumps(sorted(added)).encode() + body).hexdigest()
                    hub.commits.append({"repo_id": m[1], "summary": header["summary"],
                                        "description": header["description"], "files": sorted(added)})
                    self._json({"commitUrl": f"{hub.endpoint}/{m[1]}/commit/{repo['commit']}",
                                "commitOid": repo["commit"]})
                else:
                    self._error(404, "NotFound")

        return Handler

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hub():
    with FakeHub() as fake:
        yield fake


def run_online(hub: FakeHub, home: Path, *args: str, code: str | None = None,
               offline: bool = False) -> subprocess.CompletedProcess:
    """The CLI (through main) in a fresh process that talks to the fake Hub only."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "HF_HOME": str(home / "hf"), "HF_ENDPOINT": hub.endpoint,
           "HF_HUB_OFFLINE": "1" if offline else "0", "HF_HUB_DISABLE_TELEMETRY": "1",
           "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_TOKEN": "hf_fake_token_for_tests",
           "NO_PROXY": "127.0.0.1,localhost", "COLUMNS": str(COLUMNS)}
    argv = [sys.executable, "-m", "gemma3n_vocabfix.cli", *args] if code is None else \
        [sys.executable, "-c", code, *args]
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)


MODULES_AFTER_MAIN = ("import sys\nfrom gemma3n_vocabfix import cli\nsys.argv = ['vocabfix', *sys.argv[1:]]\n"
                      "try:\n    cli.main()\nexcept SystemExit as e:\n    code = e.code\n"
                      "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers'))\n"
                      "print('EXIT', code, heavy, file=sys.stderr)\n")


def test_inspect_over_http_reads_headers_by_range_requests(hub: FakeHub, tmp_path: Path) -> None:
    src = build(tmp_path / "ext", text=T, vision=V, audio=A, new_tokens=NEW)
    hub.add("org/ext", src)
    proc = run_online(hub, tmp_path, "inspect", "org/ext", "--json", code=MODULES_AFTER_MAIN)
    assert "EXIT 1 []" in proc.stderr, proc.stderr  # findings, and neither torch nor transformers imported
    data = json.loads(proc.stdout)
    assert data["source"] == f"org/ext@{COMMIT[:12]}"
    assert {"VF001", "VF004"} <= {f["code"] for f in data["findings"]}
    shards = {f["name"]: f for f in data["files"] if f["role"] == "weights"}
    assert len(shards) == 2 and all(f["remote"] for f in shards.values())
    assert all(f["bytes"] == (src / name).stat().st_size for name, f in shards.items())
    # every request for a shard was a ranged GET of its header (or nothing): no tensor bytes downloaded
    shard_requests = [r for r in hub.requests if r[1].endswith(".safetensors")]
    assert shard_requests and all(m == "GET" and rng and rng.startswith("bytes=0-") for m, _, rng in shard_requests)
    cache = tmp_path / "hf" / "hub" / "models--org--ext"
    assert not list(cache.rglob("*.safetensors")) and (cache / "snapshots" / COMMIT / "config.json").is_file()
    # the same repo again with HF_HUB_OFFLINE: the small files are cached, the headers are not -> one-line error
    before = len(hub.requests)
    again = run_online(hub, tmp_path, "inspect", "org/ext", offline=True)
    err = lines(again.stderr)
    assert again.returncode == 2 and len(err) == 1 and "HF_HUB_OFFLINE" in err[0], again.stderr
    assert len(hub.requests) == before  # offline means offline


def test_verify_a_hub_input_by_range_requests(hub: FakeHub, tmp_path: Path) -> None:
    """verify org/name OUT: IN's small files through the Hub cache, its shards by ranged GETs (never downloaded
    whole into the cache); a damaged OUT is still found."""
    src = build(tmp_path / "ext", text=T, vision=V, audio=A, new_tokens=NEW)
    out = tmp_path / "out"
    rewrite_checkpoint(src, out)
    hub.add("org/ext", src)
    proc = run_online(hub, tmp_path, "verify", "org/ext", str(out), "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(proc.stdout)
    assert data["ok"] and data["source"] == f"org/ext@{COMMIT[:12]}" and data["checked"]["tables"] == 2
    shard_requests = [r for r in hub.requests if r[1].endswith(".safetensors")]
    assert shard_requests and all(m == "GET" and rng and rng.startswith("bytes=") for m, _, rng in shard_requests)
    assert any(not rng.startswith("bytes=0-") for _, _, rng in shard_requests)  # rows, not only the header
    cache = tmp_path / "hf" / "hub" / "models--org--ext"
    assert not list(cache.rglob("*.safetensors"))
    raw = bytearray((out / SHARD2).read_bytes())
    raw[-1] ^= 0xFF
    (out / SHARD2).write_bytes(raw)
    damaged = run_online(hub, tmp_path, "verify", "org/ext", str(out))
    assert damaged.returncode == 1 and SHARD2 in damaged.stdout, damaged.stdout + damaged.stderr


def test_missing_shard_on_the_hub_is_a_finding(hub: FakeHub, tmp_path: Path) -> None:
    src = build(tmp_path / "rel", text=T, vision=V, audio=A)
    hub.add("org/rel", src, skip=(SHARD2,))
    proc = run_online(hub, tmp_path, "inspect", "org/rel", "--format", "github")
    assert proc.returncode == 1, proc.stderr
    assert "::error title=VF011" in proc.stdout and SHARD2 in proc.stdout


def test_unknown_repo_and_revision_exit_2(hub: FakeHub, tmp_path: Path) -> None:
    src = build(tmp_path / "rel", text=T, vision=V, audio=A)
    hub.add("org/rel", src)
    for args, needle in ((("inspect", "org/nope"), "no such repo"),
                         (("inspect", "org/rel", "--revision", "v9"), "no such revision")):
        proc = run_online(hub, tmp_path, *args)
        err = lines(proc.stderr)
        assert proc.returncode == 2 and len(err) == 1 and needle in err[0], proc.stderr
        assert "Traceback" not in proc.stderr


def test_rewrite_from_the_hub_and_push_to_the_hub(hub: FakeHub, tmp_path: Path) -> None:
    src = build(tmp_path / "ext", text=T, vision=V, audio=A, new_tokens=NEW)
    hub.add("org/ext", src)
    out = tmp_path / "fixed"
    proc = run_online(hub, tmp_path, "rewrite", "org/ext", str(out), "--push-to-hub", "me/ext-fixed", "--private")
    assert proc.returncode == 0, proc.stderr
    assert "Pushed" in proc.stdout and "me/ext-fixed" in proc.stdout
    assert hub.created[-1]["visibility"] == "private" and hub.repos["me/ext-fixed"]["private"]
    commit = hub.commits[-1]
    assert commit["summary"].startswith(f"vocabfix: move {len(NEW)} appended tokens into the text range")
    assert "vocab_size" not in commit["summary"]  # unchanged: the resize already counted the new tokens
    assert f"from org/ext@{COMMIT[:12]}" in commit["description"]
    assert f"- vision: [{T}, {T + V}) -> [{IDS.vision_new[0]}, {IDS.vision_new[1]})" in commit["description"]
    pushed = hub.repos["me/ext-fixed"]["files"]
    local = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert pushed == local and "vocabfix.json" in pushed
    # what was pushed is clean when inspected from the Hub
    check = run_online(hub, tmp_path, "inspect", "me/ext-fixed", "--strict")
    assert check.returncode == 0, check.stdout + check.stderr


def test_a_failed_push_says_out_was_written(hub: FakeHub, tmp_path: Path) -> None:
    """The rewrite is complete before the upload: when the upload fails (here HF_HUB_OFFLINE), the one line says OUT
    was written, so the rerun's "already exists" is no surprise."""
    src = build(tmp_path / "ext", text=T, vision=V, audio=A, new_tokens=NEW)
    out = tmp_path / "fixed"
    proc = run_online(hub, tmp_path, "rewrite", str(src), str(out), "--push-to-hub", "me/x", "--private",
                      offline=True)
    err = lines(proc.stderr)
    assert proc.returncode == 2 and len(err) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"{out} was written, only the upload failed" in err[0]
    assert f"hf upload me/x {out} --private" in err[0]  # the command it suggests keeps the repo private
    assert (out / "vocabfix.json").is_file() and "me/x" not in hub.repos


def test_push_dry_run_pushes_nothing(hub: FakeHub, tmp_path: Path) -> None:
    src = build(tmp_path / "ext", text=T, vision=V, audio=A, new_tokens=NEW)
    proc = run_online(hub, tmp_path, "rewrite", str(src), str(tmp_path / "out"), "--dry-run", "--json",
                      "--push-to-hub", "me/x")
    assert proc.returncode == 0, proc.stderr
    push = json.loads(proc.stdout)["push"]
    assert push["pushed"] is False and push["commit_message"].startswith("vocabfix: move 3 appended tokens")
    assert not hub.requests and not (tmp_path / "out").exists()


def test_push_options_are_checked_before_any_work(tmp_path: Path) -> None:
    src = build(tmp_path / "ext", text=T, vision=V, audio=A, new_tokens=NEW)
    for args, needle in ((("--private",), "--private"), (("--push-to-hub", "not a repo"), "not a Hub repo id")):
        proc = run_cli("rewrite", src, tmp_path / "out", *args)
        assert proc.returncode == 2 and needle in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert not (tmp_path / "out").exists()


def test_commit_message_summarises_the_change(tmp_path: Path) -> None:
    src = build(tmp_path / "ext", text=T, vision=V, audio=A, new_tokens=NEW)
    report = rewrite_checkpoint(src, tmp_path / "out", dry_run=True)
    plan = plan_push(report, tmp_path / "out", "me/fixed", private=True, source="org/ext@0123")
    assert plan.private and plan.repo_id == "me/fixed"
    description = plan.commit_description
    assert f"- text: [0, {T}) -> [0, {IDS.text_new[1]})" in description
    (old_lo, old_hi), (new_lo, new_hi) = IDS.appended_old, IDS.appended_new
    assert f"- appended: [{old_lo}, {old_hi}) -> [{new_lo}, {new_hi})" in description
    assert "text_config.vocab_size_per_layer_input" in description and "vocabfix.json" in description
    released = build(tmp_path / "rel", text=T, vision=V, audio=A)
    title, _ = commit_message(rewrite_checkpoint(released, tmp_path / "out2", dry_run=True), "org/rel")
    assert title == "vocabfix: copy of org/rel (vocabulary layout already consistent)"


def test_unreachable_hub_exits_2(tmp_path: Path) -> None:
    import socket
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"HOME": str(tmp_path), "HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": f"http://127.0.0.1:{port}",
           "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_TELEMETRY": "1"}
    proc = run_cli("inspect", "org/name", env=env)
    err = lines(proc.stderr)
    assert proc.returncode == 2 and len(err) == 1 and "cannot be reached" in err[0], proc.stderr


def test_commit_message_appended_range_when_audio_precedes_vision(tmp_path: Path) -> None:
    """Audio [T, T+A), vision [T+A, T+A+V), appended [T+V+A, T+V+A+3) -> [T, T+3)."""
    src = build(tmp_path / "swapped", text=T, vision=V, audio=A, new_tokens=NEW)
    config = json.loads((src / "config.json").read_text())
    config["audio_config"]["vocab_offset"], config["vision_config"]["vocab_offset"] = T, T + A
    (src / "config.json").write_text(json.dumps(config))
    _, description = commit_message(rewrite_checkpoint(src, tmp_path / "out", dry_run=True), "org/swapped")
    assert f"- appended: [{T + V + A}, {T + V + A + 3}) -> [{T}, {T + 3})" in description, description


def test_commit_title_of_a_padding_only_fix(tmp_path: Path) -> None:
    """No token appended, embed_tokens padded to 64 rows with vocab_size left at T+V+A: only padding goes."""
    src = build(tmp_path / "padded", text=T, vision=V, audio=A, embed_rows=64, vocab_size=T + V + A)
    title, description = commit_message(rewrite_checkpoint(src, tmp_path / "out", dry_run=True), "org/padded")
    assert title == f"vocabfix: drop {64 - (T + V + A)} padding rows", title
    assert "appended" not in description
