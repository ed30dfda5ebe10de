"""The one place cpv talks to Git (through GitPython): a small adapter, :class:`GitRepo`.

Everything else in cpv asks this adapter for Git work in cpv's own vocabulary (commit these
paths, create this annotated tag, push these refs atomically) and gets cpv errors back: GitPython's
and git's failures are translated here (``raise ... from exc``), once:

=====================================  ===============================================
git / GitPython failure                cpv error
=====================================  ===============================================
not a repository, bare, missing path   :class:`~cpv.errors.NotAWorkspaceError`
unknown revision / tag                 :class:`~cpv.errors.TagNotFoundError`
push/fetch/clone refused or unreached  :class:`~cpv.errors.GitRemoteError` (one line)
``git`` not installed, any other fail  :class:`~cpv.errors.VersioningError`
=====================================  ===============================================

Why subprocess ``git`` for most commands and GitPython objects only for reading blobs:
porcelain commands honour the user's configuration, hooks, credential helpers and SSH setup
exactly as ``git`` on the command line does, while reading many small manifests at many tags
goes through GitPython's persistent ``cat-file`` process instead of one process each. GitPython
is imported and its ``Repo`` opened only when an object is first read: a command that only runs
``git`` (a no-op ``cpv push``, ``cpv status``) does not pay for it (docs/benchmarks.md).

Identity: commits and tags use the author/committer git would use (environment or config). Only
if git has none (a fresh CI machine) does cpv pass ``cpv <cpv@localhost>`` for that one command,
through the environment; cpv never writes git config for identity.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import urlsplit

from cpv.errors import (
    FormatError,
    GitRemoteError,
    NotAWorkspaceError,
    TagNotFoundError,
    VersioningError,
)
from cpv.secrets import redact, url_credential

if TYPE_CHECKING:
    import git

log = logging.getLogger(__name__)

FALLBACK_NAME: Final = "cpv"
FALLBACK_EMAIL: Final = "cpv@localhost"

_REMOTE_NAME_RE: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}")
_BRANCH_RE: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/-]{0,199}")
_TAG_RE: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/@-]{0,199}")
"""Tags may hold ``@`` (``name@v0.1``, GTO's version lines); ``@{`` cannot occur."""
_SHA_RE: Final = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_FIELD: Final = "\x1f"
_RECORD: Final = "\x1e"
_NO_ATOMIC: Final = "does not support --atomic"
_MAX_MESSAGE: Final = 400


@dataclass(frozen=True, slots=True)
class TagInfo:
    """A tag as ``git for-each-ref`` sees it.

    ``object_id`` is the tag object (annotated) or the commit (lightweight); ``commit`` is the
    commit it points to; ``date``/``tagger``/``message`` come from the tag object, or from the
    commit for a lightweight tag.
    """

    name: str
    commit: str
    object_id: str
    annotated: bool
    date: datetime
    tagger: str
    message: str


@dataclass(frozen=True, slots=True)
class PathChange:
    """One entry of ``git status``: the two-letter code (``" M"``, ``"A "``, ``"??"``) and path."""

    code: str
    path: str


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """One stage-0 index entry, enough to put it back with ``update-index --cacheinfo``."""

    mode: str
    object_id: str
    path: str


@dataclass(frozen=True, slots=True)
class _Result:
    status: int
    stdout: str
    stderr: str


# ssh's own reasons for failing, which git prints before its generic "Could not read from remote
# repository": they say what to fix, so they are kept in the message (in this order of weight).
_SSH_REASONS: Final = (
    "REMOTE HOST IDENTIFICATION HAS CHANGED",
    "Host key verification failed",
    "Permission denied (",
    "Could not resolve hostname",
    "Connection refused",
    "Connection timed out",
    "Operation timed out",
    "No route to host",
    "Network is unreachable",
    "Connection reset",
    "Connection closed by",
    "bad permissions",
    "no such identity",
)
_GENERIC_SSH: Final = ("Could not read from remote repository", "Please make sure you have",
                       "and the repository exists")


def _one_line(*outputs: str) -> str:
    """Squeeze git's multi-line stderr/stdout into the lines that say what happened.

    ssh's own line (host key, permission denied, unknown host, refused, timed out) comes first
    and git's generic "Could not read from remote repository" is dropped: it adds nothing.
    """
    lines = [ln.strip() for out in outputs for ln in out.splitlines() if ln.strip()]
    ssh = [ln for ln in lines if any(reason in ln for reason in _SSH_REASONS)]
    ssh = [ln.strip("@ ") for ln in ssh]
    useful = [
        ln for ln in lines
        if ln.startswith(("remote:", "!", "fatal:", "error:", "ERROR:"))
        and not ln.startswith("error: failed to push some refs")
        and ln not in ("remote:",)
    ]
    if ssh:
        useful = ssh + [ln for ln in useful if not any(g in ln for g in _GENERIC_SSH)]
    picked = useful or [ln for ln in lines if not ln.startswith(("hint:", "To ", "Done"))] or lines
    text = "; ".join(dict.fromkeys(picked))
    text = redact(text).replace("\t", " ")
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def _remote_hint(text: str, url: str | None = None) -> str:
    """One thing to do next for a failed push/fetch/clone, from git's (and ssh's) message.

    Credential helpers are not suggested: cpv never prompts and never handles a secret, so an
    HTTPS login is for the user to set up for git itself, or to avoid with an SSH remote.
    """
    lowered = text.lower()
    host = _remote_host(url) or "the host"
    if "non-fast-forward" in lowered or "fetch first" in lowered:
        return "the remote has commits you do not have: fetch, merge them, then push again"
    if "already exists" in lowered or "would clobber" in lowered:
        return ("the remote holds this tag at another commit: fetch and pick the next version, "
                "or overwrite on purpose")
    if "hook declined" in lowered or "remote rejected" in lowered:
        return "the remote's hooks refused the push; see the remote's message above"
    if "remote host identification has changed" in lowered:
        return (f"{host}'s SSH host key changed: confirm the new key with its admin, then run "
                f"ssh-keygen -R {host} and connect once with ssh to accept it")
    if "host key verification failed" in lowered:
        return (f"ssh does not know {host}'s host key: check its fingerprint, then add it with "
                f"ssh-keyscan {host} >> ~/.ssh/known_hosts")
    if "permission denied (" in lowered:
        return (f"{host} refused your SSH key: add the public key to your account there (or set "
                f"git.ssh_key_path to the right key), then test with ssh -T git@{host}")
    if "bad permissions" in lowered or "no such identity" in lowered:
        return "ssh cannot use the key file: check git.ssh_key_path, and chmod 600 the key"
    if "could not resolve hostname" in lowered or "could not resolve host:" in lowered:
        return (f"the host name {host} is not known: check it in the remote URL (or the Host "
                f"alias in ~/.ssh/config) and your DNS / VPN")
    if "connection refused" in lowered or "couldn't connect" in lowered \
            or "failed to connect" in lowered:
        return (f"{host} refused the connection: check the host and port in the remote URL, "
                f"and that a firewall does not block it")
    if ("timed out" in lowered or "no route to host" in lowered
            or "network is unreachable" in lowered or "connection reset" in lowered
            or "connection closed by" in lowered):
        return f"{host} did not answer: check your network (VPN, proxy, firewall) and retry"
    if ("could not read username" in lowered or "could not read password" in lowered
            or "authentication failed" in lowered or "terminal prompts disabled" in lowered
            or "access denied" in lowered or "http basic" in lowered
            or re.search(r"returned error: 40[13]\b", lowered)):
        return ("the HTTPS remote wants a login and cpv never asks for one: use an SSH remote "
                "(git@host:team/repo.git), or set up git's own access to it outside cpv so that "
                "git fetch works without asking")
    if ("does not appear to be a git repository" in lowered or "not found" in lowered
            or "repository access denied" in lowered):
        return "check the remote URL: the repository does not exist or you cannot see it"
    if "could not read from remote" in lowered:
        return "check the remote URL, your network and your SSH key"
    return "check the remote URL and try again"


def _remote_host(url: str | None) -> str | None:
    """The host of an SSH/HTTPS remote URL (``git@host:x``, ``ssh://u@host:22/x``), or None."""
    if not url:
        return None
    if "://" in url:
        try:
            return urlsplit(url).hostname
        except ValueError:
            return None
    match = re.fullmatch(r"(?:[^@/:]+@)?([A-Za-z0-9._-]+):(?!/).*", url)
    return match.group(1) if match else None


def _check_remote_name(name: str) -> str:
    if not isinstance(name, str) or not _REMOTE_NAME_RE.fullmatch(name):
        raise VersioningError(f"invalid git remote name {name!r}",
                              hint="use a simple name such as 'origin'")
    return name


def _check_ref_part(name: str, what: str) -> str:
    pattern = _TAG_RE if what == "tag" else _BRANCH_RE
    if (not isinstance(name, str) or not pattern.fullmatch(name) or ".." in name
            or name.endswith((".lock", "/", ".")) or "//" in name):
        raise VersioningError(f"invalid {what} name {name!r}")
    return name


class GitRepo:
    """A Git working tree, seen through the few operations cpv needs.

    Build one with :meth:`init`, :meth:`open` or :meth:`clone`; close it (or use ``with``)
    to stop GitPython's helper processes.
    """

    def __init__(self, root: Path, *, repo: git.Repo | None = None,
                 ssh_command: str | None = None) -> None:
        """The work tree at ``root`` (``repo``: GitPython's, if already open). Prefer
        :meth:`open`, which validates it."""
        self._root = root
        self._gitpython = repo
        self._ssh_command = ssh_command
        self._has_identity = False

    @classmethod
    def _wrap(cls, repo: git.Repo, *, ssh_command: str | None) -> GitRepo:
        work_tree = repo.working_tree_dir
        if work_tree is None:
            repo.close()
            raise NotAWorkspaceError(f"{repo.git_dir} is a bare Git repository",
                                     hint="use a clone with a working tree as the workspace")
        return cls(Path(work_tree), repo=repo, ssh_command=ssh_command)

    def use_ssh_command(self, ssh_command: str | None) -> None:
        """Push and fetch with ``ssh_command`` as ``GIT_SSH_COMMAND`` (the configured key).

        A workspace knows it only once its configuration is read, after the repository was
        opened and found to be one."""
        self._ssh_command = ssh_command

    @property
    def _repo(self) -> git.Repo:
        """GitPython's view of the repository, opened on first use (reading objects)."""
        if self._gitpython is None:
            import git

            self._gitpython = git.Repo(self._root, search_parent_directories=False)
        return self._gitpython

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, ssh_command: str | None = None) -> GitRepo:
        """Open the Git repository whose working tree root is ``path``.

        Args:
            ssh_command: used as ``GIT_SSH_COMMAND`` for push/fetch (e.g. a specific key).

        Raises:
            NotAWorkspaceError: ``path`` does not exist, is not a Git working tree root, or is bare.
        """
        folder = Path(path)
        if _is_work_tree_root(folder):
            return cls(folder, ssh_command=ssh_command)
        import git

        try:
            repo = git.Repo(folder, search_parent_directories=False)
        except git.exc.NoSuchPathError as exc:
            raise NotAWorkspaceError(f"{folder} does not exist") from exc
        except git.exc.InvalidGitRepositoryError as exc:
            outer = _enclosing_work_tree(folder)
            if outer is not None:
                raise NotAWorkspaceError(f"{folder} is inside a Git repository, not its root",
                                         hint=f"open {outer} instead") from exc
            raise NotAWorkspaceError(f"{folder} is not a Git repository") from exc
        gitrepo = cls._wrap(repo, ssh_command=ssh_command)
        if gitrepo.root.resolve() != folder.resolve():
            repo.close()
            raise NotAWorkspaceError(f"{folder} is inside a Git repository, not its root",
                                     hint=f"open {gitrepo.root} instead")
        return gitrepo

    @classmethod
    def init(
        cls,
        path: str | os.PathLike[str],
        *,
        branch: str = "main",
        message: str = "cpv: initialize workspace",
        ssh_command: str | None = None,
    ) -> GitRepo:
        """Create a repository at ``path`` with ``branch`` holding one empty initial commit.

        An initial commit gives every later operation a HEAD to compare with and to roll back
        to. Works with any git version (no ``--initial-branch``, which needs git 2.28).

        Raises:
            VersioningError: ``path`` already holds a Git repository, or git fails.
        """
        folder = Path(path)
        _check_ref_part(branch, "branch")
        if (folder / ".git").exists():
            raise VersioningError(f"{folder} is already a Git repository",
                                  hint="open it instead of initializing it again")
        import git

        try:
            folder.mkdir(parents=True, exist_ok=True)
            repo = git.Repo.init(folder)
        except (OSError, git.exc.GitCommandError) as exc:
            raise VersioningError(f"cannot create a Git repository in {folder}: {exc}") from exc
        gitrepo = cls._wrap(repo, ssh_command=ssh_command)
        try:
            gitrepo._git("symbolic-ref", "HEAD", f"refs/heads/{branch}")
            gitrepo._git("commit", "--allow-empty", "--no-verify", "-q", "-m", message,
                         env=gitrepo._identity_env())
        except BaseException:
            gitrepo.close()
            raise
        return gitrepo

    @classmethod
    def clone(
        cls,
        url: str,
        path: str | os.PathLike[str],
        *,
        ssh_command: str | None = None,
    ) -> GitRepo:
        """Clone ``url`` into ``path`` (which must not exist or be empty) and open it.

        Raises:
            GitRemoteError: the remote cannot be reached or read.
        """
        _check_url(url)
        folder = Path(path)
        if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
            raise VersioningError(f"cannot clone into {folder}: it exists and is not empty",
                                  hint="choose a new folder for the workspace")
        import git

        env = _remote_env(ssh_command)
        try:
            result = git.Git().execute(
                ["git", "clone", "-q", "--", url, str(folder)], with_extended_output=True,
                with_exceptions=False, env=env,
            )
        except git.exc.GitCommandNotFound as exc:
            raise _no_git(exc) from exc
        status, stdout, stderr = result
        if status != 0:
            text = _one_line(str(stderr), str(stdout))
            raise GitRemoteError(f"cannot clone {redact(url)}: {text}",
                                 hint=_remote_hint(text, url))
        return cls.open(folder, ssh_command=ssh_command)

    @staticmethod
    def check_remote(url: str, *, ssh_command: str | None = None) -> None:
        """Check that ``url`` can be read (``git ls-remote``), without touching any repository.

        Raises:
            GitRemoteError: the remote cannot be reached, authenticated or read.
        """
        _check_url(url)
        import git

        try:
            status, stdout, stderr = git.Git().execute(
                ["git", "ls-remote", "-q", "--heads", "--", url], with_extended_output=True,
                with_exceptions=False, env=_remote_env(ssh_command),
            )
        except git.exc.GitCommandNotFound as exc:
            raise _no_git(exc) from exc
        if status != 0:
            text = _one_line(str(stderr), str(stdout))
            raise GitRemoteError(f"cannot read Git remote {redact(url)}: {text}",
                                 hint=_remote_hint(text, url))

    def close(self) -> None:
        """Stop GitPython's persistent helper processes."""
        if self._gitpython is not None:
            self._gitpython.close()
            self._gitpython = None

    def __enter__(self) -> GitRepo:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"GitRepo({str(self._root)!r})"

    @property
    def root(self) -> Path:
        """The working tree's root folder."""
        return self._root

    # -- running git -------------------------------------------------------------------------

    def _run(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        remote: bool = False,
        stdin: bytes | None = None,
    ) -> _Result:
        full_env = {"GIT_LITERAL_PATHSPECS": "1"}
        if remote:
            full_env.update(_remote_env(self._ssh_command))
        if env:
            full_env.update(env)
        # As GitPython's Git.execute ran it: English messages (the hints read them), the
        # executable GIT_PYTHON_GIT_EXECUTABLE names, stderr without its last newline.
        full_env = {**os.environ, "LANGUAGE": "C", "LC_ALL": "C", **full_env}
        command = [os.environ.get("GIT_PYTHON_GIT_EXECUTABLE") or "git", *args]
        try:
            done = subprocess.run(
                command, cwd=self._root, env=full_env, capture_output=True, check=False,
                input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL)
        except FileNotFoundError as exc:
            raise _no_git(exc) from exc
        stderr = done.stderr[:-1] if done.stderr.endswith(b"\n") else done.stderr
        return _Result(done.returncode, done.stdout.decode("utf-8", "surrogateescape"),
                       stderr.decode("utf-8", "surrogateescape"))

    def _git(
        self, *args: str, env: Mapping[str, str] | None = None, stdin: bytes | None = None
    ) -> str:
        """Run a local git command; a failure becomes a VersioningError naming the command."""
        result = self._run(*args, env=env, stdin=stdin)
        if result.status != 0:
            raise VersioningError(
                f"git {args[0]} failed in {self._root}: {_one_line(result.stderr, result.stdout)}",
                hint="see the git message; the workspace was left as it was before this step",
            )
        return result.stdout

    # -- identity ----------------------------------------------------------------------------

    def _identity_env(self) -> dict[str, str]:
        """Environment for one commit/tag: git's own identity, or cpv's fallback if it has none.

        Checked before every commit/tag until git is found to have an identity (then it is
        remembered for this object: identities are not unset in the middle of a session).
        """
        if self._has_identity:
            return {}
        env: dict[str, str] = {}
        for role in ("AUTHOR", "COMMITTER"):
            if self._run("var", f"GIT_{role}_IDENT").status != 0:
                env[f"GIT_{role}_NAME"] = FALLBACK_NAME
                env[f"GIT_{role}_EMAIL"] = FALLBACK_EMAIL
        self._has_identity = not env
        return env

    def author(self) -> str:
        """``Name <email>`` git would record as author here (or cpv's fallback)."""
        result = self._run("var", "GIT_AUTHOR_IDENT")
        if result.status != 0:
            return f"{FALLBACK_NAME} <{FALLBACK_EMAIL}>"
        ident = result.stdout.strip()
        # "Name <email> 1700000000 +0000": drop timestamp and zone.
        return ident.rsplit(" ", 2)[0] if ident.count(" ") >= 2 else ident

    # -- state -------------------------------------------------------------------------------

    def head_commit(self) -> str | None:
        """The commit HEAD points at, or ``None`` on an unborn branch."""
        result = self._run("rev-parse", "--verify", "-q", "HEAD^{commit}")
        return result.stdout.strip() if result.status == 0 else None

    def current_branch(self) -> str | None:
        """The checked-out branch name, or ``None`` when HEAD is detached."""
        result = self._run("symbolic-ref", "-q", "--short", "HEAD")
        return result.stdout.strip() if result.status == 0 else None

    def is_detached(self) -> bool:
        """True when HEAD points at a commit instead of a branch."""
        return self.current_branch() is None

    def changed_paths(
        self, paths: Sequence[str] | None = None, *, untracked: bool = True
    ) -> list[PathChange]:
        """``git status`` entries (staged, unstaged, and untracked) under ``paths``.

        Ignored files (the tracked bytes cpv lists in ``.gitignore``) are not reported.
        """
        args = ["status", "--porcelain=v1", "-z", "--no-renames",
                "--untracked-files=" + ("all" if untracked else "no")]
        if paths is not None:
            if not paths:
                return []
            args += ["--", *paths]
        out = self._git(*args)
        return [PathChange(code=item[:2], path=item[3:]) for item in out.split("\0") if item]

    def is_dirty(self, paths: Sequence[str] | None = None, *, untracked: bool = True) -> bool:
        """True if anything under ``paths`` (everything if ``None``) differs from HEAD."""
        return bool(self.changed_paths(paths, untracked=untracked))

    def is_ignored(self, path: str) -> bool:
        """True if ``path`` (relative to the root) is git-ignored."""
        # check-ignore takes paths, not pathspecs, and refuses the literal-pathspec switch.
        result = self._run("check-ignore", "-q", "--no-index", "--", path,
                           env={"GIT_LITERAL_PATHSPECS": "0"})
        if result.status not in (0, 1):
            raise VersioningError(f"git check-ignore failed: {_one_line(result.stderr)}")
        return result.status == 0

    # -- reading -----------------------------------------------------------------------------

    def resolve(self, rev: str) -> str:
        """The commit id ``rev`` (tag, branch, sha, ``HEAD~1``...) names.

        Raises:
            TagNotFoundError: nothing by that name, or it does not lead to a commit.
        """
        if not isinstance(rev, str) or not rev or rev.startswith("-") or "\0" in rev:
            raise TagNotFoundError(str(rev))
        result = self._run("rev-parse", "--verify", "-q", "--end-of-options", f"{rev}^{{commit}}")
        sha = result.stdout.strip()
        if result.status != 0 or not _SHA_RE.fullmatch(sha):
            raise TagNotFoundError(rev)
        return sha

    def _tree(self, rev: str) -> Any:
        """The root tree of ``rev``'s commit (a full commit id skips the rev-parse process)."""
        sha = rev if _SHA_RE.fullmatch(rev or "") else self.resolve(rev)
        import git.exc

        try:
            return self._repo.commit(sha).tree
        except (ValueError, git.exc.BadName, git.exc.BadObject) as exc:
            raise TagNotFoundError(rev) from exc

    def show_bytes(self, rev: str, path: str) -> bytes | None:
        """The bytes of ``path`` at ``rev``; ``None`` if that commit has no such file.

        Raises:
            TagNotFoundError: ``rev`` does not name a commit.
        """
        tree = self._tree(rev)
        try:
            obj = tree / path
        except KeyError:
            return None
        if obj.type != "blob":
            return None
        data: bytes = obj.data_stream.read()
        return data

    def show(self, rev: str, path: str) -> str | None:
        """Like :meth:`show_bytes`, decoded as UTF-8.

        Raises:
            TagNotFoundError: ``rev`` does not name a commit.
            FormatError: the file is not UTF-8 text.
        """
        data = self.show_bytes(rev, path)
        if data is None:
            return None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FormatError(f"{rev}:{path} is not UTF-8 text") from exc

    def list_dir(self, rev: str, path: str) -> list[str]:
        """Names of the files directly inside folder ``path`` at ``rev`` (sorted; [] if none)."""
        root = self._tree(rev)
        try:
            tree = root / path
        except KeyError:
            return []
        if tree.type != "tree":
            return []
        return sorted(blob.name for blob in tree.blobs)

    def history_blobs(self, prefix: str) -> Iterator[tuple[str, bytes]]:
        """Every distinct file under folder ``prefix`` in the history of every ref, as
        ``(path, content)``: what any commit on any branch or tag ever recorded there.

        One ``rev-list`` walks the history; contents come from GitPython's persistent
        ``cat-file`` process, so thousands of versions cost one process, not thousands.
        """
        listing = self._git("rev-list", "--all", "--objects", "--", prefix)
        seen: set[str] = set()
        for line in listing.splitlines():
            sha, _, path = line.partition(" ")
            if not path.startswith(prefix.rstrip("/") + "/") or sha in seen:
                continue
            seen.add(sha)
            binsha = bytes.fromhex(sha)
            # Ask the type first: a stream left unread would desynchronise cat-file's pipe.
            if self._repo.odb.info(binsha).type == b"blob":
                yield path, self._repo.odb.stream(binsha).read()

    # -- committing and restoring ------------------------------------------------------------

    def commit_paths(self, paths: Sequence[str], message: str) -> str | None:
        """Commit the working-tree state of exactly ``paths`` (added, changed or deleted).

        Anything else the user has staged or changed stays as it is, staged or not: this is
        ``git commit --only -- paths``. Hooks are skipped (``--no-verify``): cpv's files are
        generated, and a user's linters have nothing to say about them.

        Returns:
            The new commit id, or ``None`` if ``paths`` had nothing to commit.
        """
        if not paths:
            return None
        present = [p for p in paths if (self._root / p).exists() or self._in_index(p)]
        if not present:
            return None
        self._git("add", "-A", "--", *present)
        if self._run("diff", "--cached", "--quiet", "--", *present).status == 0:
            return None
        self._git("commit", "--only", "--no-verify", "-q", "--cleanup=verbatim", "-m", message,
                  "--", *present, env=self._identity_env())
        head = self.head_commit()
        if head is None:  # pragma: no cover - a successful commit always sets HEAD
            raise VersioningError("commit succeeded but HEAD is unborn")
        return head

    def _in_index(self, path: str) -> bool:
        return bool(self._git("ls-files", "-z", "--", path).strip("\0"))

    def index_entries(self, paths: Sequence[str]) -> dict[str, IndexEntry]:
        """Stage-0 index entries of ``paths`` (missing ones are absent from the result)."""
        if not paths:
            return {}
        entries: dict[str, IndexEntry] = {}
        for item in self._git("ls-files", "-s", "-z", "--", *paths).split("\0"):
            if not item:
                continue
            meta, path = item.split("\t", 1)
            mode, object_id, stage = meta.split(" ")
            if stage == "0":
                entries[path] = IndexEntry(mode=mode, object_id=object_id, path=path)
        return entries

    def restore_index(self, paths: Iterable[str], entries: Mapping[str, IndexEntry]) -> None:
        """Put the index entries of ``paths`` back to ``entries`` (absent -> removed)."""
        for path in paths:
            entry = entries.get(path)
            if entry is None:
                self._git("update-index", "--force-remove", "--", path)
            else:
                self._git("update-index", "--add", "--cacheinfo",
                          f"{entry.mode},{entry.object_id},{entry.path}")

    def set_branch_head(self, branch: str, commit: str | None, *, expected: str | None) -> None:
        """Move ``branch`` to ``commit`` (``None`` deletes it: back to unborn).

        ``expected`` is the commit the branch must currently be at; git refuses otherwise, so a
        concurrent change is never overwritten blindly.
        """
        ref = f"refs/heads/{_check_ref_part(branch, 'branch')}"
        if commit is None:
            args = ["update-ref", "-d", ref] + ([expected] if expected else [])
        else:
            args = ["update-ref", ref, commit] + ([expected] if expected else [])
        self._git(*args)

    def checkout_paths(self, rev: str, paths: Sequence[str]) -> None:
        """Write ``paths`` as they are at ``rev`` into the index and working tree."""
        if paths:
            self._git("checkout", self.resolve(rev), "--", *paths)

    def reset(self, rev: str, *, mode: Literal["soft", "mixed", "hard"] = "mixed") -> None:
        """Move the current branch to ``rev`` (``git reset --<mode>``)."""
        self._git("reset", "-q", f"--{mode}", self.resolve(rev))

    # -- tags --------------------------------------------------------------------------------

    def tag_targets(self) -> dict[str, str]:
        """Every tag name -> the object it points at (tag object or commit)."""
        out = self._git("for-each-ref", "refs/tags", "--format=%(refname:strip=2) %(objectname)")
        targets: dict[str, str] = {}
        for line in out.splitlines():
            if line.strip():
                name, object_id = line.rsplit(" ", 1)
                targets[name] = object_id
        return targets

    def branch_names(self) -> set[str]:
        """Local and remote-tracking branch names (``main``; ``origin/main`` counts as
        ``main``): names an alias must not hide."""
        heads = self._git("for-each-ref", "refs/heads", "--format=%(refname:strip=2)")
        remotes = self._git("for-each-ref", "refs/remotes", "--format=%(refname:strip=3)")
        return {n.strip() for n in (heads + "\n" + remotes).splitlines() if n.strip()}

    def list_tags(self) -> list[TagInfo]:
        """Every tag that leads to a commit, with its date, tagger and message."""
        fmt = _FIELD.join([
            "%(refname:strip=2)", "%(objecttype)", "%(objectname)", "%(*objecttype)",
            "%(*objectname)", "%(creatordate:iso-strict)",
            "%(if)%(taggername)%(then)%(taggername) %(taggeremail)"
            "%(else)%(committername) %(committeremail)%(end)",
            "%(contents)",
        ]).replace(_FIELD, "%1f") + "%1e"
        out = self._git("for-each-ref", "refs/tags", f"--format={fmt}")
        tags: list[TagInfo] = []
        for record in out.split(_RECORD):
            record = record.lstrip("\n")
            if not record:
                continue
            fields = record.split(_FIELD)
            if len(fields) != 8:
                log.debug("skipping unparsable tag record %r", record[:80])
                continue
            name, objtype, objname, peeled_type, peeled, date, tagger, message = fields
            annotated = objtype == "tag"
            commit = peeled if annotated else objname
            if (peeled_type if annotated else objtype) != "commit":
                continue
            tags.append(TagInfo(
                name=name, commit=commit, object_id=objname, annotated=annotated,
                date=_parse_git_date(date), tagger=tagger, message=message.rstrip("\n"),
            ))
        return tags

    def create_tag(
        self, name: str, *, message: str, rev: str = "HEAD", force: bool = False
    ) -> str:
        """Create annotated tag ``name`` at ``rev``; returns the tag object's id.

        The caller validates ``name``; an existing tag makes git fail unless ``force``.
        """
        commit = self.resolve(rev)
        args = ["tag", "-a", "--cleanup=verbatim", "-m", message]
        if force:
            args.append("-f")
        self._git(*args, "--", _check_ref_part(name, "tag"), commit, env=self._identity_env())
        return self._git("rev-parse", "--verify", f"refs/tags/{name}").strip()

    def create_tags(
        self, tags: Sequence[tuple[str, str, str]], *, force: bool = False
    ) -> dict[str, str]:
        """Create annotated tags ``(name, message, rev)`` in one reference transaction.

        The tag objects are written first (unreferenced objects are harmless); then one
        ``git update-ref --stdin`` moves every ref at once, so a process killed at any instant
        leaves all of the tags or none (a combined ``v0.2`` / ``data-v0.2``). Without ``force``
        an existing tag fails the whole transaction.

        Returns:
            each tag name -> its tag object's id.

        Raises:
            VersioningError: a tag exists (without ``force``) or git failed; no ref changed.
        """
        env = self._identity_env()
        ident = self._git("var", "GIT_COMMITTER_IDENT", env=env).strip()
        objects: dict[str, str] = {}
        for name, message, rev in tags:
            _check_ref_part(name, "tag")
            commit = self.resolve(rev)
            body = (f"object {commit}\ntype commit\ntag {name}\ntagger {ident}\n\n"
                    f"{message}")
            objects[name] = self._git("mktag", stdin=body.encode()).strip()
        verb = "update" if force else "create"
        script = "".join(f"{verb} refs/tags/{name} {oid}\n" for name, oid in objects.items())
        self._git("update-ref", "--stdin", stdin=("start\n" + script + "commit\n").encode())
        return objects

    def delete_tag(self, name: str) -> None:
        """Delete local tag ``name`` (no error if it does not exist)."""
        self._git("update-ref", "-d", f"refs/tags/{_check_ref_part(name, 'tag')}")

    def restore_tag(self, name: str, object_id: str) -> None:
        """Point tag ``name`` at ``object_id`` again (used to undo an overwrite)."""
        self._git("update-ref", f"refs/tags/{_check_ref_part(name, 'tag')}", object_id)

    # -- remotes -----------------------------------------------------------------------------

    def remote_url(self, name: str) -> str | None:
        """The URL of remote ``name``, or ``None`` if there is no such remote."""
        result = self._run("remote", "get-url", "--", _check_remote_name(name))
        return result.stdout.strip() if result.status == 0 else None

    def set_remote(self, name: str, url: str) -> None:
        """Add remote ``name`` or change its URL.

        Raises:
            VersioningError: the URL carries a password or token (invariant 8: no secrets).
        """
        _check_url(url)
        _check_remote_name(name)
        if self.remote_url(name) is None:
            self._git("remote", "add", "--", name, url)
        else:
            self._git("remote", "set-url", "--", name, url)

    def push(
        self,
        remote: str,
        *,
        branch: str | None,
        tags: Sequence[str] = (),
        force_tags: Collection[str] = (),
        atomic: bool = True,
    ) -> None:
        """Push ``branch`` and ``tags`` to ``remote``, all or nothing.

        Uses ``git push --atomic``. A server that cannot do atomic pushes gets a normal push;
        if that is partly refused, tags this push had newly created on the remote are deleted
        there again, so the remote never keeps half of a combined tag.

        Raises:
            GitRemoteError: the remote refused or could not be reached; the message is the
                remote's, on one line.
        """
        _check_remote_name(remote)
        refspecs: list[str] = []
        if branch is not None:
            ref = f"refs/heads/{_check_ref_part(branch, 'branch')}"
            refspecs.append(f"{ref}:{ref}")
        for tag in tags:
            ref = f"refs/tags/{_check_ref_part(tag, 'tag')}"
            refspecs.append(("+" if tag in force_tags else "") + f"{ref}:{ref}")
        if not refspecs:
            return
        if atomic:
            result = self._run("push", "--atomic", "--porcelain", "--", remote, *refspecs,
                               remote=True)
            if result.status == 0:
                return
            if _NO_ATOMIC not in result.stderr:
                raise self._remote_error("push to", remote, result)
            log.warning("remote %s cannot push atomically; pushing refs one by one", remote)
        result = self._run("push", "--porcelain", "--", remote, *refspecs, remote=True)
        if result.status == 0:
            return
        error = self._remote_error("push to", remote, result)
        created = [
            parts[1].split(":", 1)[1] for line in result.stdout.splitlines()
            if (parts := line.split("\t")) and len(parts) >= 2 and parts[0] == "*"
            and parts[1].split(":", 1)[-1].startswith("refs/tags/")
        ]
        if created:
            undo = self._run("push", "--porcelain", "--", remote,
                             *[f":{ref}" for ref in created], remote=True)
            if undo.status != 0:
                log.warning("could not remove partly pushed tags %s from %s: %s",
                            created, remote, _one_line(undo.stderr, undo.stdout))
        raise error

    def fetch(self, remote: str, *, force_tags: bool = False) -> None:
        """Fetch branches and all tags from ``remote``.

        A tag that exists locally at another commit is not overwritten unless ``force_tags``.

        Raises:
            GitRemoteError: the remote cannot be reached or a tag would be clobbered.
        """
        args = ["fetch", "--tags", "-q"] + (["--force"] if force_tags else [])
        result = self._run(*args, "--", _check_remote_name(remote), remote=True)
        if result.status != 0:
            raise self._remote_error("fetch from", remote, result)

    def remote_tags(self, remote: str) -> dict[str, str]:
        """Tag name -> tag object id on ``remote`` (one ``git ls-remote``).

        Raises:
            GitRemoteError: the remote cannot be reached.
        """
        result = self._run("ls-remote", "-q", "--tags", "--", _check_remote_name(remote),
                           remote=True)
        if result.status != 0:
            raise self._remote_error("list tags of", remote, result)
        tags: dict[str, str] = {}
        for line in result.stdout.splitlines():
            sha, _, ref = line.partition("\t")
            if ref.startswith("refs/tags/") and not ref.endswith("^{}"):
                tags[ref[len("refs/tags/"):]] = sha
        return tags

    def commits_ahead(self, remote: str, branch: str) -> int:
        """Commits of ``branch`` that the remote-tracking ``remote/branch`` does not have.

        Every commit counts when the branch was never published.
        """
        tracking = f"refs/remotes/{_check_remote_name(remote)}/{_check_ref_part(branch, 'branch')}"
        known = self._run("rev-parse", "--verify", "-q", tracking).status == 0
        spec = f"{tracking}..refs/heads/{branch}" if known else f"refs/heads/{branch}"
        result = self._run("rev-list", "--count", spec)
        return int(result.stdout.strip() or 0) if result.status == 0 else 0

    def set_upstream(self, remote: str, branch: str) -> None:
        """Make ``remote/branch`` the upstream of ``branch`` so plain ``git pull`` works."""
        self._run("branch", f"--set-upstream-to={remote}/{branch}", branch)

    def adopt_local_remote_head(self, remote: str, branch: str) -> None:
        """Point an empty-headed bare remote on this machine at ``branch``.

        ``git init --bare`` names ``master`` as HEAD; after cpv pushes ``main`` there, a plain
        ``git clone`` would check out nothing. Hosting services point HEAD at the first pushed
        branch; for a bare repository on a local path cpv does the same, and only when the
        branch HEAD names does not exist there.
        """
        url = self.remote_url(remote)
        if url is None:
            return
        if url.startswith("file://"):
            path = Path(url[len("file://"):])
        elif "://" in url or ":" in url.split("/", 1)[0]:
            return  # a hosted remote (https, ssh, host:path): the host sets its own HEAD
        else:
            path = Path(url)
        if not path.is_absolute():
            path = (self._root / path).resolve()
        if not (path / "HEAD").is_file() or not (path / "refs").is_dir():
            return
        bare = ["git", f"--git-dir={path}"]
        import git

        try:
            head = git.Git().execute([*bare, "symbolic-ref", "-q", "HEAD"],
                                     with_exceptions=False).strip()
            if not head or git.Git().execute(
                    [*bare, "rev-parse", "--verify", "-q", head], with_exceptions=False).strip():
                return
            git.Git().execute([*bare, "symbolic-ref", "HEAD", f"refs/heads/{branch}"],
                              with_exceptions=False)
        except git.exc.GitCommandError as exc:  # pragma: no cover - best effort
            log.debug("could not point %s's HEAD at %s: %s", url, branch, exc)

    def _remote_error(self, verb: str, remote: str, result: _Result) -> GitRemoteError:
        text = _one_line(result.stderr, result.stdout)
        url = self.remote_url(remote) if _REMOTE_NAME_RE.fullmatch(remote) else None
        where = f"{remote} ({redact(url)})" if url else remote
        return GitRemoteError(f"{verb} {where} failed: {text}", hint=_remote_hint(text, url))


def _is_work_tree_root(folder: Path) -> bool:
    """True if ``folder`` is plainly the root of a work tree: its ``.git`` is a repository
    folder (HEAD, objects, refs) and no ``GIT_DIR`` points elsewhere. Anything else (a
    ``.git`` file of a linked work tree or submodule, a bare repository, no repository) goes
    through GitPython's checks and their precise errors."""
    dot_git = folder / ".git"
    return ("GIT_DIR" not in os.environ and "GIT_WORK_TREE" not in os.environ
            and (dot_git / "HEAD").is_file() and (dot_git / "objects").is_dir()
            and (dot_git / "refs").is_dir())


def _enclosing_work_tree(folder: Path) -> str | None:
    import git

    try:
        with git.Repo(folder, search_parent_directories=True) as outer:
            tree = outer.working_tree_dir
            return None if tree is None else str(tree)
    except (git.exc.InvalidGitRepositoryError, git.exc.NoSuchPathError):
        return None


def _parse_git_date(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.strip()).astimezone(timezone.utc)
    except ValueError:
        return datetime.fromtimestamp(0, timezone.utc)


def _remote_env(ssh_command: str | None) -> dict[str, str]:
    # Never hang on a login prompt, on the terminal or in a Git Credential Manager window: fail,
    # and let the hint say what to do.
    env = {"GIT_TERMINAL_PROMPT": "0", "GCM_INTERACTIVE": "never"}
    if ssh_command:
        env["GIT_SSH_COMMAND"] = ssh_command
    return env


def _check_url(url: str) -> None:
    if not isinstance(url, str) or not url.strip() or url.startswith("-") or "\0" in url:
        raise VersioningError(f"invalid Git remote URL {url!r}",
                              hint="use an SSH or HTTPS URL, or a path to a repository")
    credential = url_credential(url)
    if credential:
        raise VersioningError(
            f"remote URL {redact(url)} carries {credential}; cpv never stores secrets",
            hint="use an SSH remote (git@host:team/repo.git), or the HTTPS URL without the "
                 "token and set up git's own access to it outside cpv",
        )


def _no_git(exc: Any) -> VersioningError:
    return VersioningError(f"the git executable was not found ({exc})",
                           hint="install git and make sure it is on PATH")
