"""kerascnn.errors: every library error is a UsageError (exit 2) or a RunFailed (exit 1), and keeps its old base."""

from kerascnn.errors import RunFailed, UsageError
from kerascnn.training import TrainingDiverged


def test_every_library_error_is_a_usage_error_or_a_failed_run_and_keeps_its_old_base():
    from kerascnn.commands.results import MissingFileError
    from kerascnn.config import ConfigError
    from kerascnn.data import DataError
    from kerascnn.distribute import DistributeError
    from kerascnn.export import ExportError
    from kerascnn.loading import ModelFileError
    from kerascnn.models.registry import ModelError
    from kerascnn.predict import ImageError
    from kerascnn.rundir import RunDirError
    from kerascnn.serve import ServeError
    from kerascnn.tuning.config import SearchFailed, TuningError

    usage = (ConfigError, DataError, DistributeError, ExportError, ModelFileError, ModelError, RunDirError, ServeError,
             TuningError, MissingFileError)
    assert all(issubclass(cls, UsageError) and cls.exit_status == 2 for cls in usage)
    assert all(issubclass(cls, RunFailed) and cls.exit_status == 1 for cls in (TrainingDiverged, SearchFailed, ImageError))
    assert all(issubclass(cls, ValueError) for cls in (ConfigError, DistributeError, ExportError, ModelFileError,
                                                       ModelError, ServeError, TuningError, ImageError))
    assert issubclass(TrainingDiverged, RuntimeError) and issubclass(SearchFailed, RuntimeError)
    assert issubclass(MissingFileError, FileNotFoundError)

