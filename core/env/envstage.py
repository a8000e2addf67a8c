"""The env merge of one upgrade, staged: what the review shows and the cutover installs, named by sha256.

Pre-flight merges once and stages the result (`stage`): an `EnvSyncResult` in the plan (masked rows, counts, each
staged file's path in the run folder and its sha256) and the merged bytes in this process's memory. The run folder
receives them when the run opens (`write_staged`), so that a dry run or a plan refused before the run opens leaves
no file behind; the `env-sync` task publishes the result (`check_unchanged` first) and `install-env` installs exactly
the staged bytes (`read_staged`), refusing any others.

Besides the `.env`, a target with Dify's split layout has `copies`: one record per `envs/**.env` file its services
load (`StagedCopy.record`): the operator's existing copies, merged (staged when the merge changes them), and the
ones that do not exist (`existed` false), which no step creates and the rollback makes absent again.
"""
from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from pathlib import Path

from core import files
from core.env import effective, envmerge
from core.errors import EnvSyncError, EnvWriteFailed

COPIES_DIR = "env.copies"  # the merged `envs/**.env` copies, staged in the run folder under their checkout paths


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class EnvChangedSincePlan(EnvSyncError):
    """Before the cutover, an env file the backup holds or a staged merge is not what pre-flight merged and staged:
    the env diff under review is no longer what would be installed."""

    def __init__(self, path: Path, finding: str):
        self.path = path
        super().__init__(f"{path}: {finding}, so the env diff under review is not what would be installed. Nothing was "
                         f"stopped or changed: run the upgrade again (its pre-flight merges the .env as it is then).")


class StagedEnvChanged(EnvWriteFailed):
    """At `install-env`, the staged file's bytes are not those pre-flight merged (their sha256 is not the plan's)."""

    advice = ("None of it was installed, and the stack is being rolled back to the previous version. Only stackshift "
              "writes the run folder: find what changed the file, then run the upgrade again (its pre-flight stages a "
              "new one).")

    def __init__(self, step_id: str, path: Path, expected: str, found: str):
        self.path = path
        super().__init__(step_id, f"the staged env file {path} is not the one pre-flight merged ({found}; the plan has "
                                  f"sha256 {expected[:12]}…)")


def read_checked(step_id: str, path: Path, expected: str) -> str:
    """The text of the staged file `path`, exactly the bytes whose sha256 is `expected`; StagedEnvChanged if not."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise StagedEnvChanged(step_id, path, expected, f"it cannot be read: {exc.strerror}") from None
    found = sha256(data)
    if found != expected:
        raise StagedEnvChanged(step_id, path, expected, f"its sha256 is {found[:12]}…")
    return data.decode("utf-8")


@dataclass(frozen=True)
class EnvSyncResult:
    """The env merge of one upgrade, computed once by pre-flight: the rows and counts the `env-sync` task publishes,
    and the staged files `install-env` installs, named by their sha256. Holds nothing secret (it goes into
    plan.json): the merged text is only in the staged files (0600) and, until the run folder opens, in this
    process's memory.

    A plan.json written before the result existed has `env_report` and `env_counts` instead (`from_facts`): nothing
    staged (`sha256` empty), and `install-env` installs the run folder's `env.merged` as it did then.
    """

    rows: list[dict]  # envmerge.masked_changes: a secret value is only ever `(secret)` or `(unset)`
    counts: dict[str, int]
    staged: str = ""  # where the merged bytes go in the run folder
    sha256: str = ""  # of the merged bytes ("" = an old plan: nothing staged)
    size: int = 0
    source_sha256: str = ""  # of the .env pre-flight merged
    effective: dict = field(default_factory=dict)  # effective.masked: per disputed key, what each service gets
    copies: list[dict] = field(default_factory=list)  # `StagedCopy.record` of each `envs/**.env` the target loads

    @classmethod
    def from_facts(cls, facts: dict) -> EnvSyncResult:
        """The result in a plan.json's facts, or one made of an old plan.json's `env_report` and `env_counts`."""
        if "env_sync" in facts:
            return cls(**facts["env_sync"])
        return cls(list(facts.get("env_report", [])), dict(facts.get("env_counts", {})))

    @property
    def path(self) -> Path:
        return Path(self.staged)

    @property
    def existing_copies(self) -> list[str]:
        """The copies the operator had when pre-flight read them (paths relative to the checkout)."""
        return [c["path"] for c in self.copies if c["existed"]]

    @property
    def changed_copies(self) -> list[dict]:
        """The copies whose merge changes them: staged, and installed by `install-env`."""
        return [c for c in self.copies if c["sha256"]]

    def check_unchanged(self, backed_up_env: Path, compose_dir: Path | None = None,
                        backup_root: Path | None = None) -> None:
        """Raises EnvChangedSincePlan unless the backup's copy of the .env (and of every `envs/**.env` copy, in
        `backup_root` under its checkout path) is the file pre-flight merged, a copy that did not exist still does
        not (in the checkout `compose_dir`), and the staged files hold the bytes it staged (an old plan has nothing
        to check)."""
        if not self.sha256:
            return
        _check_file(backed_up_env, self.source_sha256, "the .env was edited after pre-flight merged it (this backup "
                                                       "copy of it is another file)")
        _check_file(self.path, self.sha256, "the staged merge was changed or removed after pre-flight staged it")
        backup_root = backup_root or backed_up_env.parent
        for copy in self.copies:
            if copy["existed"]:
                _check_file(backup_root / copy["path"], copy["source_sha256"], "the copy was edited after pre-flight "
                                                                               "merged it (this backup of it differs)")
            elif compose_dir is not None and (compose_dir / copy["path"]).exists():
                raise EnvChangedSincePlan(compose_dir / copy["path"], "the copy was created after pre-flight read the "
                                                                      "env files")
            if copy["sha256"]:
                _check_file(Path(copy["staged"]), copy["sha256"], "the staged merge of the copy was changed or "
                                                                  "removed after pre-flight staged it")

    def read_staged(self, step_id: str) -> str:
        """The staged text, exactly the bytes pre-flight merged; StagedEnvChanged if they are not."""
        return read_checked(step_id, self.path, self.sha256)


def _check_file(path: Path, expected: str, finding: str) -> None:
    if not path.is_file() or sha256(path.read_bytes()) != expected:
        raise EnvChangedSincePlan(path, finding)


@dataclass(frozen=True)
class StagedCopy:
    """One `envs/**.env` file the target loads, as pre-flight found and merged it: `record` goes into the plan
    (masked), `data` (the merged bytes, None when unchanged or absent) only into the run folder."""

    record: dict
    data: bytes | None = None

    @classmethod
    def of(cls, path: str, run_dir: Path, merge: tuple[str, envmerge.MergeResult] | None,
           secret_keys: frozenset[str] = frozenset()) -> StagedCopy:
        """`path` (relative to the checkout) merged from its `original` text (`merge`: (original, result); None:
        the operator has no such copy)."""
        record: dict = {"path": path, "existed": merge is not None, "source_sha256": "", "staged": "", "sha256": "",
                        "size": 0, "rows": [], "counts": {}, "notes": []}
        if merge is None:
            return cls(record)
        original, result = merge
        record.update(source_sha256=sha256(original.encode("utf-8")), counts=result.counts(), notes=result.notes,
                      rows=envmerge.masked_changes(result, secret_keys))
        if result.text == original:
            return cls(record)
        data = result.text.encode("utf-8")
        record.update(staged=str(run_dir / COPIES_DIR / path), sha256=sha256(data), size=len(data))
        return cls(record, data)


# Merged bytes staged by pre-flight, until the run folder opens: one entry per project folder (a dry run's or a
# refused plan's is replaced by the next pre-flight's), staged path -> bytes. Never in facts, task results or
# artifacts.
_staged: dict[Path, dict[str, bytes]] = {}
_staged_lock = threading.Lock()


def stage(merged: envmerge.MergeResult, path: Path, source_sha256: str, secret_keys: frozenset[str] = frozenset(),
          copies: tuple[StagedCopy, ...] = ()) -> EnvSyncResult:
    """The result of pre-flight's merge, its bytes (and the changed copies') staged for `path` (in the run folder)
    and named by sha256.

    Call it once the checks of the merge are done (they may add notes to the rows). Nothing is written:
    `write_staged` writes the bytes when the run opens.
    """
    data = merged.text.encode("utf-8")
    result = EnvSyncResult(envmerge.masked_changes(merged, secret_keys), merged.counts(), str(path), sha256(data),
                           len(data), source_sha256, effective.masked(merged.disputed, secret_keys),
                           [c.record for c in copies])
    with _staged_lock:
        _staged[path.parent.parent] = {result.staged: data, **{c.record["staged"]: c.data for c in copies
                                                              if c.data is not None}}
    return result


def write_staged(result: EnvSyncResult) -> None:
    """Writes the bytes pre-flight staged for `result` into the run folder (made 0700 if missing; the files 0600,
    atomically). Refuses (EnvChangedSincePlan) when this process holds no bytes with the plan's sha256."""
    if not result.sha256:
        return
    with _staged_lock:
        held = dict(_staged.get(result.path.parent.parent, {}))
    wanted = [(result.path, result.sha256), *((Path(c["staged"]), c["sha256"]) for c in result.changed_copies)]
    for path, digest in wanted:
        if sha256(held.get(str(path), b"")) != digest:
            raise EnvChangedSincePlan(path, "this process holds no merge with the plan's sha256 (the plan was made by "
                                            "another process)")
    for path, _ in wanted:
        path.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
        path.unlink(missing_ok=True)  # a new file: write_atomic makes it 0600
        files.write_atomic(path, held[str(path)], keep_mode=True)
    with _staged_lock:
        _staged.pop(result.path.parent.parent, None)


__all__ = ["COPIES_DIR", "EnvChangedSincePlan", "EnvSyncResult", "StagedCopy", "StagedEnvChanged", "read_checked",
           "stage", "write_staged"]
