"""keras-tuner's oracles, plus progress, atomic saves and lost workers; `make_oracle`.

The oracle is the search algorithm: it picks each trial's values and keeps
the search's state (`oracle.json`). `_SearchOracle` is mixed into keras-tuner's
Hyperband, random and Bayesian oracles: it reports each finished trial, saves
its state atomically, resumes a search that lost a trial's folder or file
(`reload`: the trial is skipped, never numbered over), and, in the
distributed search, gives the trial of a worker silent too long to another
(`reap_lost_workers`, called by `serve_oracle`).
"""

import time

import keras_tuner
from keras_tuner.engine.trial import Trial, TrialStatus

from kerascnn import compat, rundir
from kerascnn.tuning.config import OBJECTIVE
from kerascnn.tuning.progress import _reason


class _SearchOracle:
    """Mixed into keras-tuner's oracles (the chief's, or the only one).

    Adds: a progress report per finished trial (`reporter`); atomic state
    files, so a search killed while saving still resumes; and, for the
    distributed search, tracking when each worker was last heard from so
    that the trial of a lost worker is run by another (`reap_lost_workers`).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reporter = None  # a `ProgressReporter`, or None
        self.failure = None  # why the search stopped early, or None
        self._last_seen = {}  # tuner ID -> time.monotonic() of its last call
        self.lost = {}  # trial ID -> why it was lost (`reload`)

    def _owner(self, trial_id):
        return next((t for t, trial in self.ongoing_trials.items() if trial.trial_id == trial_id), None)

    def _heard_from(self, tuner_id):
        if tuner_id is not None:
            self._last_seen[tuner_id] = time.monotonic()

    @keras_tuner.synchronized
    def create_trial(self, tuner_id):
        self._heard_from(tuner_id)
        if self.failure is not None:
            self.tuner_ids.discard(tuner_id)
            return Trial(self.get_space(), status=TrialStatus.STOPPED)
        if (
            self.max_trials and len(self.trials) >= self.max_trials and not compat.retry_queue(self)
            and tuner_id not in self.ongoing_trials and self.ongoing_trials
        ):
            # Wait rather than stop: a busy worker may yet be lost, its trial to be rerun.
            self.tuner_ids.add(tuner_id)
            return Trial(self.get_space(), status=TrialStatus.IDLE)
        return super().create_trial(tuner_id)

    @keras_tuner.synchronized
    def get_trial(self, trial_id):  # also the workers' heartbeat
        self._heard_from(self._owner(trial_id))
        return super().get_trial(trial_id)

    @keras_tuner.synchronized
    def update_trial(self, trial_id, metrics, step=0):
        self._heard_from(self._owner(trial_id))
        return super().update_trial(trial_id, metrics, step=step)

    @keras_tuner.synchronized
    def end_trial(self, trial):
        owner = self._owner(trial.trial_id)
        self._heard_from(owner)
        if trial.trial_id in self.end_order:  # a worker given up for lost finished it after all
            for tuner_id in [t for t, tr in self.ongoing_trials.items() if tr.trial_id == trial.trial_id]:
                self.ongoing_trials.pop(tuner_id)
            return
        if trial.trial_id in compat.retry_queue(self):
            compat.retry_queue(self).remove(trial.trial_id)
        try:
            super().end_trial(trial)
        except RuntimeError as e:  # too many consecutive failed trials: stop every tuner
            self.failure = f"{str(e).strip().splitlines()[0]} The last: {_reason(trial.message)}"
            self.ongoing_trials.pop(owner, None)
            compat.save_trial(self, self.trials[trial.trial_id])
            self.save()
        if self.reporter is not None:
            self.reporter.trial_ended(self, self.trials[trial.trial_id], owner)

    def reload(self):
        """Resumes the search recorded in the project folder: keras-tuner's `Oracle.reload`, and lost trials.

        A trial whose folder or `trial.json` is missing, or whose `trial.json`
        cannot be read, is lost: it is recorded in `lost` (trial ID -> why),
        kept in `trials` as an empty INVALID trial (skipped by every oracle,
        never best, not a failure in a row) and counted as ended, so it is
        neither rerun nor numbered over, and its folder is left as it is.
        keras-tuner numbers a new trial by the count of `trials`
        (`Oracle.create_trial`) and loads every `trial.json` there is: a
        missing folder made the next trial take the ID of the last one and
        overwrite it, then, that ID having ended already, ask for it again
        forever; a damaged file stopped the resume with a traceback.
        """
        for trial_id, path in compat.trial_files(self).items():
            try:
                trial = Trial.load(path)
                if trial.trial_id != trial_id:
                    raise ValueError(f"it names trial {trial.trial_id}")
            except FileNotFoundError:
                self.lost[trial_id] = "its trial.json is missing"
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:  # what a damaged JSON raises
                self.lost[trial_id] = f"its trial.json cannot be read ({type(e).__name__}: {e})"
            else:
                self.trials[trial_id] = trial
        self.set_state(rundir.read_json(compat.oracle_state_path(self)))
        # As keras-tuner's reload: the trials that were running are run again, and so is one created but not yet
        # in the saved state (stopped between the two saves of `create_trial`); lost trials are not.
        queue = compat.retry_queue(self)
        queue.extend(trial.trial_id for trial in self.ongoing_trials.values())
        self.ongoing_trials = {}
        queue.extend(t for t, trial in self.trials.items()
                     if trial.status == TrialStatus.RUNNING and t not in queue and t not in self.end_order)
        queue[:] = [t for t in queue if t not in self.lost]
        self.end_order.extend(t for t in self.lost if t not in self.end_order)

    def set_state(self, state):
        # Every trial the state names must be in `trials`: a lost one as a stand-in. So must every number below
        # the highest in use, so that the count keras-tuner numbers the next trial by is past them all.
        named = {*state["start_order"], *state["end_order"], *state["ongoing_trials"].values(), *state["retry_queue"]}
        for trial_id in sorted(named - set(self.trials) - set(self.lost)):
            self.lost[trial_id] = "its folder is missing"
        numbers = {int(t) for t in (*self.trials, *self.lost) if t.isdigit()}
        for number in sorted(set(range(max(numbers, default=-1) + 1)) - numbers):
            self.lost[str(number)] = "its folder is missing"
        for trial_id, why in self.lost.items():
            self.trials.setdefault(trial_id, Trial(self.get_space(), trial_id=trial_id, status=TrialStatus.INVALID,
                                                   message=f"lost when the search resumed: {why}"))
        super().set_state(state)

    @keras_tuner.synchronized
    def reap_lost_workers(self, timeout):
        """Gives up on workers silent for `timeout` seconds; requeues their trials."""
        now = time.monotonic()
        for tuner_id in sorted(self.tuner_ids):
            silent = now - self._last_seen.setdefault(tuner_id, now)
            if silent < timeout:
                continue
            self.tuner_ids.discard(tuner_id)
            trial = self.ongoing_trials.pop(tuner_id, None)
            if trial is not None:
                compat.retry_queue(self).append(trial.trial_id)
                self.save()
            then = f"its trial {trial.trial_id} goes to the next free worker" if trial else "it had no trial"
            print(f"Worker {tuner_id} silent for {silent:.0f}s (worker timeout {timeout:g}s): {then}.", flush=True)

    @keras_tuner.synchronized
    def finished(self):
        """No trial running and every worker told to stop."""
        return not self.ongoing_trials and not self.tuner_ids

    def save(self):
        rundir.write_json(compat.oracle_state_path(self), self.get_state())

    def _save_trial(self, trial):  # keras-tuner's own hook (see compat.save_trial), made atomic
        rundir.write_json(compat.trial_state_path(self, trial.trial_id), trial.get_state())


class HyperbandOracle(_SearchOracle, keras_tuner.oracles.HyperbandOracle):
    pass


class RandomSearchOracle(_SearchOracle, keras_tuner.oracles.RandomSearchOracle):
    pass


class BayesianOptimizationOracle(_SearchOracle, keras_tuner.oracles.BayesianOptimizationOracle):
    pass


def make_oracle(config):
    """The oracle of `config.tuner`, stopping after `config.max_trials` trials."""
    objective = keras_tuner.Objective(OBJECTIVE, direction="max")
    if config.tuner == "hyperband":
        # Brackets without end (iterations=None) and max_trials as the budget,
        # so that --max-trials means the same for every tuner.
        oracle = HyperbandOracle(objective, max_epochs=config.max_epochs, hyperband_iterations=None, seed=config.seed)
        oracle.max_trials = config.max_trials  # honoured by keras-tuner's base Oracle
    elif config.tuner == "random":
        oracle = RandomSearchOracle(objective, max_trials=config.max_trials, seed=config.seed)
    else:
        oracle = BayesianOptimizationOracle(objective, max_trials=config.max_trials, seed=config.seed)
    oracle.verbose = 0  # our one line per trial replaces keras-tuner's display
    return oracle
