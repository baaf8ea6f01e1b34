"""One run of a config, assembled: precision, seed, model, input pipelines, schedule.

Every way this project trains goes through `assemble`: `train()` (and so
`train.py` and the time-to-accuracy tool), the tuner's `CNNHyperModel`, the
benchmark and the sweep. What differs between them is what they do with the
`Run` it returns, never how a model is built, compiled or fed:

0. the config, resolved (`kerascnn.config.resolve`: the model's recipe, its
   defaults and the precision filled in), once: `Run.config` holds it, and
   everything below reads it;
1. the precision policy and the seed of every random draw (`config.seed`);
2. the data: `config.dataset` (a name, a folder or an `.npz`), split by
   `config.split_seed` (or splits given);
3. the input: `tf.data` pipelines of uint8 images scaled in the graph
   (`kerascnn.pipeline`, sized by the distribution `Plan`), or, with
   `arrays=True`, float32 NumPy arrays for a Keras without TensorFlow;
   your own images go in as raw pixels, which the model scales itself;
4. the model from the registry, created for the data's shape and classes
   (`DataSpec.model_kwargs`) and compiled in the plan's scope
   (`compile_model`: Adam, the loss, accuracy, the recipe's weight average);
5. the callbacks that set each epoch's randomness and optimisation
   (`callbacks.schedule_callbacks`: the epoch's seeds, the learning-rate
   schedule and, with a weight average, its swap).

Example:

>>> from kerascnn.config import TrainConfig
>>> run = assemble(TrainConfig(model="sequential", subset=200, val_size=100))  # doctest: +SKIP
>>> run.model.fit(run.train, validation_data=run.val, callbacks=run.schedule)  # doctest: +SKIP
"""

import dataclasses

import keras

from kerascnn import data as data_lib
from kerascnn import pipeline
from kerascnn.callbacks import schedule_callbacks
from kerascnn.config import resolve
from kerascnn.distribute import Plan
from kerascnn.layers import allow_jit
from kerascnn.losses import SparseCrossentropy
from kerascnn.models import create_model, model_defaults
from kerascnn.precision import jit_compile_setting, set_precision


@dataclasses.dataclass
class Run:
    """What `assemble` made for one run of `config`.

    Attributes:
        config: the resolved `TrainConfig` (`kerascnn.config.resolve`) the run trains with.
        policy: str, the precision policy in use (`auto` resolved).
        plan: the `distribute.Plan` the run is spread by.
        model: the compiled `keras.Model`.
        splits: `data.Splits`; with tf.data input, `x_train` and `y_train`
            are dropped once the pipeline holds its own copy.
        train_images: int, images in the training split.
        train: the training input: a `tf.data.Dataset`, or `(x, y)` arrays.
        val: the validation input, of the same kind.
        schedule: the callbacks that set each epoch's seeds and optimisation, in order.
        epoch: the `tf.Variable` keying each epoch's data order (see
            `callbacks.EpochSeeds`), or None with array input.
    """

    config: object
    policy: str
    plan: Plan
    model: keras.Model
    splits: data_lib.Splits
    train_images: int
    train: object
    val: object
    schedule: list
    epoch: object = None

    def test_input(self, plan=None):
        """The test split as this run feeds evaluation, or as `plan` (a `distribute.Plan`) would feed it."""
        return _eval_input(plan or self.plan, self.splits.x_test, self.splits.y_test, self.config, self.epoch is None,
                           self.splits.spec)


def assemble(config, plan=None, splits=None, model=None, arrays=False, **compile_overrides):
    """Assembles a run of `config`: see the module docstring for the steps, in order.

    Args:
        config: `TrainConfig`, resolved here unless it is already
            (`kerascnn.config.resolve`).
        plan: `distribute.Plan`, from `distribute.setup(config.strategy)`,
            which must run before any computation. Defaults to one device.
        splits: `data.Splits` to train on. Defaults to `config.dataset`,
            loaded and split as the config says.
        model: a model built by an earlier `assemble` (keras-tuner builds
            and trains in two calls); precision, seed and model are then
            left as they are. Defaults to a new model.
        arrays: bool, feed NumPy arrays instead of `tf.data` (no TensorFlow
            needed). Defaults to False.
        **compile_overrides: other `Model.compile` arguments (see `compile_model`).

    Returns:
        A `Run`.

    Raises:
        DataError: the dataset is missing or a split asks for too many images.
        ModelError: the config's model or one of its arguments is unknown.
    """
    plan = plan or Plan("default")
    config = resolve(config)  # the run's recipe, once (a resolved config comes back as it is)
    # First the policy and the seed: the pipelines' shuffles and the model's weights draw from it.
    policy = prepare(config) if model is None else keras.mixed_precision.dtype_policy().name
    if splits is None:
        splits = load_splits(config)
    spec = splits.spec
    # The augmentation policy `auto` chooses from the data (`kerascnn.layers.policy`): decided now that it is read.
    config = resolve(config, spec, splits.x_train, plan.replicas)
    train_images = len(splits.x_train)
    epoch = None
    if arrays:
        train = (data_lib.model_input(splits.x_train, spec.raw_pixels), splits.y_train)
    else:
        epoch = pipeline.epoch_variable()  # keys each epoch's order; set by the EpochSeeds callback
        train = pipeline.train_dataset(splits.x_train, splits.y_train, plan, config.batch_size, seed=config.seed,
                                       epoch=epoch, scale=not spec.raw_pixels, cache=config.cache_dir)
        splits.x_train = splits.y_train = None  # the pipeline holds its own copy (tf.constant); drop ours
    val = _eval_input(plan, splits.x_val, splits.y_val, config, arrays, spec)
    if model is None:
        model = _compiled_model(config, plan, compile_overrides, spec)
    return Run(config, policy, plan, model, splits, train_images, train, val, schedule_callbacks(config, epoch), epoch)


def load_splits(config):
    """The config's dataset, loaded (`--image-size`, `--color-mode`) and split as the config says.

    The one split: `train.py`'s run and `tune.py`'s search both call it, so
    the test share a folder without `test/` gives up and the validation
    split are carved by `config.split_seed` alike, and a search never trains
    or validates on a picture the final run tests on.
    """
    dataset = pipeline.load_dataset(config.dataset, config.data_dir, image_size=config.image_size,
                                    color_mode=config.color_mode, seed=config.split_seed, stream=config.stream)
    return data_lib.split(dataset, config.val_size, config.subset, config.split_seed)


def prepare(config):
    """Sets the precision policy and seeds every random draw; returns the policy name."""
    policy = set_precision(config.precision)
    keras.utils.set_random_seed(config.seed)
    return policy


def build_model(config, spec=None, **compile_overrides):
    """`prepare`, then the config's model, compiled: `assemble`'s model for a caller that feeds it later.

    keras-tuner builds a trial's model (`HyperModel.build`) before it hands
    over the data (`HyperModel.fit`, which then calls `assemble(..., model=model)`).

    Args:
        spec: `data.DataSpec` of the data it will be fed. Defaults to MNIST's.
    """
    spec = spec or data_lib.dataset_spec()
    config = resolve(config, spec)  # the augmentation policy from the spec (`auto` on one channel: see assemble)
    prepare(config)
    return _compiled_model(config, Plan("default"), compile_overrides, spec)


def _compiled_model(config, plan, compile_overrides, spec):
    with plan.scope():  # the variables, mirrored over the replicas; the optimizer's and metrics' too
        model = create_model(config.model, **config.model_kwargs(), **model_data_kwargs(config.model, spec))
        return compile_model(model, config, **compile_overrides)


def model_data_kwargs(name, spec):
    """`spec.model_kwargs()` for model `name`: `global_pool` and `stages` left out for a model that takes none."""
    takes = model_defaults(name)
    return {k: v for k, v in spec.model_kwargs().items() if k in takes or k not in ("global_pool", "stages")}


def _eval_input(plan, x, y, config, arrays, spec):
    if arrays:
        return data_lib.model_input(x, spec.raw_pixels), y
    return pipeline.eval_dataset(x, y, plan, config.batch_size, scale=not spec.raw_pixels, cache=config.cache_dir)


def compile_model(model, config, **overrides):
    """Adam, cross-entropy on probabilities, accuracy: the one compile.

    The weight average (`ema`) and label smoothing are the resolved
    config's (`kerascnn.config.resolve`): its own, or the model's recipe's
    where it leaves them None.

    Args:
        overrides: other `Model.compile` arguments, e.g. `jit_compile=True`
            (the benchmark) or `steps_per_execution=10` (the sweep).
    """
    config = resolve(config)  # a run's config is resolved already, and comes back as it is
    allow_jit(model)
    if config.label_smoothing:
        loss = SparseCrossentropy(config.label_smoothing)
    else:
        loss = keras.losses.SparseCategoricalCrossentropy()
    model.compile(
        **{
            "optimizer": keras.optimizers.Adam(
                config.lr, use_ema=config.ema > 0, ema_momentum=config.ema or 0.99
            ),
            "loss": loss,
            # "nll": the cross-entropy of the probabilities, unsmoothed, whatever the training loss smooths:
            # validation's val_nll is what the `nll` checkpoint rule watches, and what the probabilities cost.
            "metrics": [keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
                        keras.metrics.SparseCategoricalCrossentropy(name="nll")],
            "jit_compile": jit_compile_setting(),
            **overrides,
        }
    )
    return model
