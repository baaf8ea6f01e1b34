"""One search per folder: the folder's lock, and the checks before a search writes in it.

`check_project` checks, without writing, that a folder can hold the search
asked for (`check_kind` compares with the `search.json` recorded there);
`prepare_project` empties it for `--overwrite` and records the search's kind;
`SearchLock` keeps a second single-machine search out of it.
"""

import os
import shutil

from kerascnn import rundir
from kerascnn.tuning.config import SEARCH_FILE, TuningError


class SearchLock(rundir.FileLock):
    """An exclusive lock on `<project_dir>.lock`, so two searches never share an oracle.

    The operating system drops the lock when its process ends, killed or not;
    a stopped search can always be resumed. The file names its holder
    (`kerascnn.rundir.FileLock`, which a run directory's lock shares).

    Args:
        project_dir: str, the search's folder (the lock file sits beside it).
    """

    def __init__(self, project_dir):
        super().__init__(project_dir.rstrip(os.sep) + ".lock")

    def refused(self, holder):
        project = self.path[: -len(".lock")]
        return TuningError(
            f"The search in {project} is in use by another tune.py ({holder}). Wait for it to finish, "
            f"or use another --project-name; to share one search between machines, use the distributed "
            f"mode (KERASTUNER_* variables, see docs/TUNING.md). Received: directory={os.path.dirname(project)!r}, "
            f"project_name={os.path.basename(project)!r}"
        )


def check_project(config):
    """Checks, without writing, that the search folder can hold the search `config` asks for.

    Returns:
        True when the folder holds a search (of the same kind, unless
        `config.overwrite`), False when it is missing or empty.

    Raises:
        TuningError: the folder holds a search of another kind, or something
            that is not a search.
    """
    project = config.project_dir
    if os.path.exists(project) and not os.path.isdir(project):
        raise TuningError(f"{project} is a file, not a search folder. Received: project_name={config.project_name!r}")
    if not (os.path.isdir(project) and os.listdir(project)):
        return False
    kind_file = os.path.join(project, SEARCH_FILE)
    if not os.path.exists(kind_file):
        raise TuningError(
            f"{project} holds files that are not a tune.py search (no {SEARCH_FILE}); it is left as it is. "
            f"Choose another --directory or --project-name. Received: project_name={config.project_name!r}"
        )
    if not config.overwrite:
        check_kind(kind_file, config.kind())
    return True


def prepare_project(config):
    """Checks the search folder (`check_project`), empties it for `--overwrite`, records the search's kind.

    Call it holding the folder's `SearchLock`.

    Returns:
        True when an earlier search of the same kind is there to resume.
    """
    existing = check_project(config)
    if existing and config.overwrite:
        shutil.rmtree(config.project_dir)
        existing = False
    os.makedirs(config.project_dir, exist_ok=True)
    rundir.write_json(os.path.join(config.project_dir, SEARCH_FILE), config.kind())
    return existing


def check_kind(kind_file, wanted):
    """Raises `TuningError` when the search recorded in `kind_file` differs from `wanted`."""
    try:
        found = rundir.read_json(kind_file)
    except (OSError, ValueError) as e:
        raise TuningError(f"{kind_file} cannot be read ({e}); use --overwrite to start afresh.") from None
    diff = [k for k in wanted if found.get(k) != wanted[k]]
    if diff:
        had = ", ".join(f"{k}={found.get(k)!r}" for k in diff)
        asked = ", ".join(f"{k}={wanted[k]!r}" for k in diff)
        raise TuningError(
            f"{os.path.dirname(kind_file)} holds a search made with {had}; this command asks for "
            f"{asked}. Run it with the same settings to resume, add --overwrite to start afresh, or choose "
            f"another --project-name. Received: {asked}"
        )
