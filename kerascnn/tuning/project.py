"""One search per folder: the folder's lock, the search's identity, and the checks before a search writes in it.

A search's identity is everything that changes a trial's result, recorded in
`search.json`: the search's settings (`SearchConfig.kind`: tuner, data,
split, epochs, seed, image size, colour mode), best's recipe
(`trial_recipe`: augmentation, label smoothing, ...), and the facts a
process that trains finds (`FACTS`): the precision policy its `--precision`
resolves to, the SHA-256 of the images and labels the search trains and
validates on (`kerascnn.data.content_digest`) and, for pictures of your own
that the flags alone do not describe, the augmentation policy `auto`
chooses from them and its amounts (`trial_policy`). The first process that
finds a fact records it; every later one must find the same.

`check_project` checks, without writing, that a folder can hold the search
asked for (`check_kind` compares with the `search.json` recorded there);
`prepare_project` empties it for `--overwrite` and records the search;
`check_worker` is the chief's check of a worker that joins;
`SearchLock` keeps a second single-machine search out of the folder.
"""

import os
import shutil
import threading
import uuid

from kerascnn import rundir
from kerascnn.tuning.config import KIND_KEYS, SEARCH_FILE, TuningError
from kerascnn.tuning.hypermodel import POLICY_KEYS, trial_recipe

# Found by a process that trains, not set by a flag alone: the precision policy (`--precision auto` resolves it
# per machine), the digest of the data the search trains and validates on, and the augmentation policy and
# amounts chosen from your own pictures (a built-in dataset's are in the recipe, known from the flags). A chief
# records its --precision when it names a policy; otherwise the first process that trains records them. A
# search.json of an older tune.py holds None for the policy's amounts of your own pictures: not recorded.
FACTS = ("precision", "data_sha256", *POLICY_KEYS)
SEARCH_ID = "search_id"  # a search's name, made when it begins: a worker proves it shares the chief's folder by it


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


def search_identity(config):
    """Everything that changes a trial's result that the config itself says: `kind()` and best's recipe."""
    return {**config.kind(), **trial_recipe(config.train_config())}


def check_project(config, identity, facts=None, shown=None):
    """Checks, without writing, that the search folder can hold the search `config` asks for.

    Args:
        identity: dict, `search_identity(config)`.
        facts: dict, what this process found of `FACTS` (none: not known).
        shown: dict, how to show a value of this command in a refusal,
            where it is not the value itself (`--precision auto`).

    Returns:
        True when the folder holds a search (of the same identity, unless
        `config.overwrite`), False when it is missing or empty.

    Raises:
        TuningError: the folder holds a search of another identity, or
            something that is not a search.
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
        check_kind(kind_file, identity, facts, shown)
    return True


def prepare_project(config, identity, facts=None):
    """Checks the search folder (`check_project`), empties it for `--overwrite`, records the search.

    Call it holding the folder's `SearchLock`. The search's identity is
    written to `search.json` with the facts recorded before and those found
    now, and the search's ID (made when it begins).

    Returns:
        (resuming, unrecorded): whether an earlier search of the same
        identity is there to resume, and the identity's keys its
        `search.json` did not hold (written by an older tune.py): they are
        recorded now as this command's.
    """
    existing = check_project(config, identity, facts)
    if existing and config.overwrite:
        shutil.rmtree(config.project_dir)
        existing = False
    os.makedirs(config.project_dir, exist_ok=True)
    kind_file = os.path.join(config.project_dir, SEARCH_FILE)
    found = _read_kind(kind_file) if existing else {}
    unrecorded = [k for k in identity if k not in found] if existing else []
    rundir.write_json(kind_file, _record(found, identity, facts))
    return existing, unrecorded


def _record(found, identity, facts):
    """search.json's new content: the identity, the facts recorded before or found now, the search's ID."""
    known = {k: v for k, v in (facts or {}).items() if v is not None}
    recorded = {k: found[k] for k in FACTS if found.get(k) is not None}
    return {**identity, **known, **recorded, SEARCH_ID: found.get(SEARCH_ID) or uuid.uuid4().hex}


def _read_kind(kind_file):
    try:
        found = rundir.read_json(kind_file)
        if not isinstance(found, dict):
            raise ValueError(f"a JSON {type(found).__name__}, not an object")
    except (OSError, ValueError) as e:
        raise TuningError(f"{kind_file} cannot be read ({e}); use --overwrite to start afresh.") from None
    return found


def differences(found, identity, facts=None):
    """The keys whose value this process wants differs from the recorded search's `found`: (key, recorded, wanted).

    A key `found` does not hold (recorded by an older tune.py, or a fact not
    found yet) does not differ; neither does a fact this process does not know.
    """
    diff = [(k, found[k], v) for k, v in identity.items() if k in found and found[k] != v]
    return diff + [(k, found[k], v) for k, v in (facts or {}).items()
                   if v is not None and found.get(k) is not None and found[k] != v]


def _show(key, value, shown=None):
    if shown and key in shown:
        return f"{key}={shown[key]}"
    if key == "data_sha256":
        return f"{key}={value[:16]}..."
    return f"{key}={value!r}"


def describe(diff, shown=None):
    """(recorded, asked) of `differences`' result, in words, and what the keys that are not flags mean."""
    had = ", ".join(_show(k, old) for k, old, _ in diff)
    asked = ", ".join(_show(k, new, shown) for k, _, new in diff)
    keys = {k for k, _, _ in diff}
    notes = ""
    if "data_sha256" in keys:
        notes += (" data_sha256 is the SHA-256 of the images and labels the search trains and validates on "
                  "(kerascnn.data.content_digest): the data is not the same.")
    if "precision" in keys:
        notes += " precision is the policy a trial trains with (--precision auto: the machine's)."
    policy = [k for k in POLICY_KEYS if k in keys]
    if policy:
        notes += (f" {', '.join(policy)}: the augmentation policy the installed kerascnn chooses for this data "
                  f"(kerascnn.layers.policy) and its amounts, not a flag; resume with the kerascnn that began the "
                  f"search.")
    recipe = sorted(keys - {"model", "members", *KIND_KEYS, *FACTS})  # the rest of an identity is the recipe
    if recipe:
        notes += (f" {', '.join(recipe)}: best's recipe in the installed kerascnn, not a flag; resume with the "
                  f"kerascnn that began the search.")
    return had, asked, notes


def check_kind(kind_file, identity, facts=None, shown=None):
    """Raises `TuningError` when the search recorded in `kind_file` differs from this process's (`differences`)."""
    diff = differences(_read_kind(kind_file), identity, facts)
    if diff:
        had, asked, notes = describe(diff, shown)
        raise TuningError(
            f"{os.path.dirname(kind_file)} holds a search made with {had}; this command asks for "
            f"{asked}. Run it with the same settings to resume, add --overwrite to start afresh, or choose "
            f"another --project-name.{notes} Received: {asked}"
        )


_JOINING = threading.Lock()  # the chief checks one worker at a time, so a fact is recorded once


def check_worker(config, target, request):
    """The chief's check of a worker that joins: None when it may, else why not (the worker exits with status 2).

    The worker must work in the chief's folder (its `search.json` holds the
    chief's search ID) and want the search's identity; the facts it found
    are recorded where the search holds none yet.

    Args:
        config: the chief's `SearchConfig`.
        target: str, the chief's address, for the message.
        request: dict, what the worker sent (`tuning.search.join_request`).
    """
    kind_file = os.path.join(config.project_dir, SEARCH_FILE)
    with _JOINING:
        found = _read_kind(kind_file)
        if request["search_id"] != found.get(SEARCH_ID):
            why = "it holds no tune.py search" if request["search_id"] is None else "it holds another search"
            return (
                f"This worker's search folder {request['project_dir']} is not the chief's ({why}): the chief at "
                f"{target} serves the search in {os.path.abspath(config.project_dir)}. Every process needs the "
                f"same --directory and --project-name, on a folder they share (NFS or similar). "
                f"Received: directory={request['directory']!r}, project_name={request['project_name']!r}"
            )
        diff = differences(found, request["identity"], request["facts"])
        if diff:
            had, asked, notes = describe(diff, request.get("shown"))
            return (
                f"The chief at {target} serves the search in {os.path.abspath(config.project_dir)}, made with "
                f"{had}; this worker asks for {asked}. Start the worker with the chief's settings: every process "
                f"runs the same command.{notes} Received: {asked}"
            )
        new = {k: v for k, v in request["facts"].items() if v is not None and found.get(k) is None}
        if new:
            rundir.write_json(kind_file, {**found, **new})
    return None
