"""keras-tuner's `Tuner` for `tune.py`: trials, resume, memory hygiene, the distributed roles.

The tuner runs the trials the oracle hands out (training, not choosing).
`_SearchTuner` frees each trial's model and graphs when it ends, so memory
stays flat from trial to trial; reloads a search started under another tuner
ID; and, by role, serves the oracle (the chief) or talks to the chief's
(a worker). `_HyperbandSearchTuner` adds Hyperband's checkpoint promotion.
"""

import gc
import os

import keras
import keras_tuner

from kerascnn import compat
from kerascnn.tuning.distributed import WorkerClient, serve_oracle


class _SearchTuner(keras_tuner.Tuner):
    """keras-tuner's `Tuner` for `tune.py`: one role of a search, on `oracle`.

    Args:
        oracle: a `_SearchOracle`.
        hypermodel: `CNNHyperModel`.
        role: None (the only process), "chief" (serves the oracle) or "worker".
        address: (ip, port) of the chief; distributed roles only.
        worker_timeout: float, seconds; see `SearchConfig`.
        link: a worker's `ChiefLink`, joined.
        check_worker: the chief's check of a worker that joins (`serve_oracle`).
        **kwargs: `keras_tuner.Tuner` arguments (directory, project_name).
    """

    def __init__(self, oracle, hypermodel, role=None, address=None, worker_timeout=60.0, link=None,
                 check_worker=None, **kwargs):
        project = os.path.join(kwargs["directory"], kwargs["project_name"])
        tuner_file = os.path.join(project, os.environ.get("KERASTUNER_TUNER_ID", "tuner0") + ".json")
        reloads = os.path.exists(tuner_file)
        # Not super().__init__: Hyperband's would make its own oracle.
        compat.init_base_tuner(self, oracle=oracle, hypermodel=hypermodel, overwrite=False, **kwargs)
        self.role, self.address, self.worker_timeout = role, address, worker_timeout
        self.check_worker = check_worker
        self.trials_run = 0
        if role != "worker" and not reloads and os.path.exists(os.path.join(project, "oracle.json")):
            # keras-tuner reloads the oracle only along with this tuner ID's own
            # file; a search started under another ID (a chief, a killed first
            # trial) must resume too, not start over on top of its trials.
            self.oracle.reload()
        if role == "worker":
            self.oracle = WorkerClient(self.oracle, link)

    def search(self, *fit_args, **fit_kwargs):
        if self.role == "chief":
            self.save()
            serve_oracle(self.oracle, *self.address, worker_timeout=self.worker_timeout,
                         check_worker=self.check_worker)
            return
        super().search(*fit_args, **fit_kwargs)

    def on_trial_begin(self, trial):
        self._gradients_before = _custom_gradient_names()
        super().on_trial_begin(trial)
        if self.role == "worker":
            print(f"{self.tuner_id}: running trial {trial.trial_id}", flush=True)

    def on_trial_end(self, trial):
        # Free this trial's model and graphs before reporting, so memory stays
        # flat from trial to trial (keras-tuner issues 395, 873). Clearing the
        # Keras session is not enough with TensorFlow: each traced train step
        # registers a custom gradient (in the optimizer's all-reduce) in TF's
        # global gradient registry, which is never emptied and pins the whole
        # step graph, ~25 MB a trial (tensorflow/tensorflow#97697). The trial's
        # model is gone, so the entries it added are dropped.
        registry = compat.tf_gradient_registry()
        for name in _custom_gradient_names() - getattr(self, "_gradients_before", _custom_gradient_names()):
            registry.pop(name, None)
        keras.backend.clear_session(free_memory=False)
        gc.collect()
        compat.release_free_heap()
        self.trials_run += 1
        super().on_trial_end(trial)
        if self.role == "worker":
            print(f"{self.tuner_id}: finished trial {trial.trial_id} ({trial.status})", flush=True)


def _custom_gradient_names():
    return {name for name in compat.tf_gradient_registry() if name.startswith("CustomGradient-")}


class _HyperbandSearchTuner(_SearchTuner, keras_tuner.Hyperband):
    """Hyperband's training (a promoted trial resumes from its checkpoint) on our oracle."""
