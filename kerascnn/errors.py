"""The two kinds of error a command turns into its exit status, and the errors several modules raise.

Every error the library raises derives from one of these (`ConfigError`,
`DataError`, `ModelError`, ... from `UsageError`; `TrainingDiverged` and
`SearchFailed` from `RunFailed`), so a command catches two classes
(`kerascnn.commands.run_command`). This module imports nothing, so catching
them costs nothing: a bad `--config` exits as fast as `--help`.

An error raised by one module lives beside that module; one raised by
several lives here, so that none of them imports another only for its
error (`DistributeError`: `kerascnn.distribute` and `kerascnn.pipeline`).

Example:

>>> from kerascnn.config import ConfigError
>>> issubclass(ConfigError, UsageError), ConfigError.exit_status
(True, 2)
"""


class UsageError(Exception):
    """Bad usage: the job cannot start as asked, and nothing has been written.

    The message names the argument, says what was expected and ends with
    `Received: name=value`. A command prints it argparse-style after its
    usage line and exits with status 2.
    """

    exit_status = 2


class RunFailed(Exception):
    """The job started but failed (a diverged loss, a search without a result).

    A command prints the message and exits with status 1.
    """

    exit_status = 1


class DistributeError(UsageError, ValueError):
    """A strategy cannot run as configured: its cluster environment, the backend, or too few images for
    one global batch (raised by `kerascnn.distribute` and `kerascnn.pipeline`)."""


class OutputExists(UsageError, FileExistsError):
    """A command's output file is already there: it is left as it is (`explain --out`, `export --out`)."""
