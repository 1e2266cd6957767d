"""Continual-learning task streams: seeded sequences of tasks with train and test data.

A :class:`Stream` is a tuple of :class:`Experience` (one per task), each with its
own ``train`` and ``test`` record datasets (``grain.MapDataset``). A record is

.. code-block:: python

    {"inputs": float32[T, F], "lengths": int32 (= T),
     "targets": int32 (global label: an output unit), "task": int32 (task index)}

so records batch through ``seqjax.tasks.classification.batched`` like any other
classification records (which adds ``weights``).

==================  ====================================  =======  ==========  =====
stream              task ``k``                            tasks    settings    T x F
==================  ====================================  =======  ==========  =====
``permuted_mnist``  MNIST, pixels permuted by a seeded    10       **domain**, 28x28
                    permutation (every task, ``k = 0``             task        (rows)
                    too)
``rotated_mnist``   MNIST rotated by                      10       **domain**, 28x28
                    ``rotation_angles(K)[k]`` = 180 k / K          task
``split_mnist``     digits ``2k, 2k+1``                   5 (≤ 5)  **task**,   28x28
                                                                   class
``split_cifar10``   CIFAR-10 classes ``2k, 2k+1`` (RGB)   5 (≤ 5)  **task**,   32x96
                                                                   class
``split_cifar100``  CIFAR-100 classes ``kc .. kc+c-1``,   10 (K    **task**,   32x96
                    ``c = 100 / K``                       | 100)   class
``parity_stream``   N-parity with ``N = 2 + k`` of a bit  5        **domain**, Lx1
                    stream of length ``L = data.seq_len``          task
==================  ====================================  =======  ==========  =====

(default setting in bold). **Settings** (van de Ven & Tolias, 2019) decide the
labels, i.e. which output units a task uses (``Experience.classes``):

* ``"domain"``: every task shares one head: MNIST digits ``0..9``, parity ``0/1``;
* ``"task"``: each task has its own units: permuted/rotated MNIST task ``k`` uses
  ``10k .. 10k+9`` (``num_classes = 10 K``), parity ``2k, 2k+1``; split streams
  keep their global class ids (a task's units are its classes; a task-incremental
  learner masks the others by ``Experience.classes``);
* ``"class"`` (split streams): the same global class ids, one shared head,
  evaluated without knowing the task.

**Inputs.** Images are read as sequences by ``data.options["order"]``: ``"rows"``
(default; ``T = H`` rows of ``F = W C`` values) or ``"pixels"`` (``T = H W``
pixels of ``F = C`` values), in ``[0, 1]``
(:func:`seqjax.data.image_streams.to_sequence`). The parity stream's inputs are
the bits, ``[L, 1]``.

**Data.** MNIST comes from the idx files in ``data.options["mnist_dir"]`` (else
``$SEQJAX_MNIST_DIR``, else TFDS ``mnist``); ``data.options["splits"]`` is
``"standard"`` (the 60,000 training images to train, the 10,000 test images to
test) or ``"t10k"`` (train and test carved out of the 10,000 ``t10k`` images only,
8,000/2,000 with ``data.seed``: quick offline runs, never for reported numbers).
CIFAR comes from ``tfds.data_source("cifar10" | "cifar100")`` splits ``train`` and
``test`` (``data.options["tfds_data_dir"]``, else ``data.tfds_data_dir``;
``data.options["download"]``). The images are read once into ``uint8`` arrays;
records are made lazily (``MapDataset.source(...).map(...)``), so ten permuted
tasks share one copy of the images. The parity stream is generated
(:func:`seqjax.data.parity.make_batch`), ``data.options["sizes"]`` = (train,
test) sequences per task (default 8192, 1024).

**Sizes and seeds.** ``cl.train_examples`` / ``cl.eval_examples`` (0: all) keep,
per task, the first ``n`` examples of a seeded shuffle of the task's examples;
permuted and rotated tasks all use the same images (record ``i`` of every task is
the same image, transformed). Everything derives from ``data.seed``: the
permutation of task ``k`` is ``np.random.default_rng([seed, k]).permutation(784)``
(:func:`task_permutation`); the shuffles and the parity data use
``np.random.default_rng([seed, tag, split, k])``. The same config gives the same
records.

Example::

    config = seqjax.config.Config()
    config.cl.stream = "split_mnist"
    config.data.options = {"mnist_dir": "../shared/data/mnist", "splits": "t10k"}
    stream = make_stream(config)
    [e.name for e in stream.experiences]  # ['digits 0-1', ..., 'digits 8-9']

References:
  van de Ven & Tolias, "Three scenarios for continual learning" (2019);
  Kirkpatrick et al., "Overcoming catastrophic forgetting in neural networks"
  (2017); Lopez-Paz & Ranzato, "Gradient Episodic Memory for Continual Learning"
  (2017); Zenke, Poole & Ganguli, "Continual Learning Through Synaptic
  Intelligence" (2017); Khajehabdollahi, Zeraati et al., "Emergent mechanisms for
  long timescales depend on training curriculum and affect performance in memory
  tasks" (2024) for N-parity.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable
from typing import Any, NamedTuple

import grain
import numpy as np

from seqjax import config as config_lib
from seqjax.data import corpus, image_streams, mnist, parity, sources

SETTINGS = ("task", "class", "domain")
SPLIT_MODES = ("standard", "t10k")
T10K_TEST_SIZE = 2000
PARITY_SIZES = (8192, 1024)

_TRAIN, _TEST = 0, 1  # split codes in derived seeds
_SHUFFLE_TAG, _PARITY_TAG = 1, 2  # what a derived seed is for
_READ_CHUNK = 1024


@dataclasses.dataclass(frozen=True)
class Experience:
    """One task of a stream.

    Attributes:
      index: the task's position ``k`` in the stream (the records' ``"task"``).
      name: a short label, e.g. ``"perm 3"``, ``"digits 4-5"``, ``"N=5"``.
      classes: the output units (global labels) this task's examples use.
      train: training records (see the module docstring).
      test: test records.
    """

    index: int
    name: str
    classes: tuple[int, ...]
    train: grain.MapDataset
    test: grain.MapDataset


@dataclasses.dataclass(frozen=True)
class Stream:
    """A sequence of tasks and what a model needs to know to learn them.

    Attributes:
      name: the stream (a key of :data:`STREAMS`).
      setting: ``"task"``, ``"class"`` or ``"domain"``-incremental.
      experiences: the tasks, in training order.
      num_classes: the model's output units.
      input_features: ``F``, the features per step of ``inputs``.
      seq_len: ``T``, the steps of every sequence.
    """

    name: str
    setting: str
    experiences: tuple[Experience, ...]
    num_classes: int
    input_features: int
    seq_len: int

    @property
    def num_tasks(self) -> int:
        """The number of experiences."""
        return len(self.experiences)


class StreamInfo(NamedTuple):
    """A registered stream.

    Attributes:
      builder: ``(config, setting, num_tasks, options) -> Stream``, called with
        the setting and task count resolved and the option keys checked.
      settings: the settings the stream allows.
      default_setting: used when ``cl.setting`` is empty.
      default_num_tasks: used when ``cl.num_tasks`` is 0.
      options: the ``data.options`` keys the stream understands.
    """

    builder: Callable[[config_lib.Config, str, int, dict[str, Any]], Stream]
    settings: tuple[str, ...]
    default_setting: str
    default_num_tasks: int
    options: tuple[str, ...]


# --- helpers shared by the streams ---------------------------------------------------


class _ImageSet(NamedTuple):
    images: np.ndarray  # uint8 [n, H, W] or [n, H, W, C]
    labels: np.ndarray  # int64 [n]


class _TaskImages:
    """``[i] -> {"image", "label"}`` of ``images[indices[i]]`` (a grain data source)."""

    def __init__(self, data: _ImageSet, indices: np.ndarray):
        self.data, self.indices = data, np.asarray(indices, np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        i = int(self.indices[index])
        return {"image": self.data.images[i], "label": self.data.labels[i]}

    def __repr__(self) -> str:
        return f"_TaskImages({len(self)} of {len(self.data.images)} images)"


def _image_record(
    example: dict[str, np.ndarray],
    *,
    transform: Callable[[np.ndarray], np.ndarray] | None,
    order: str,
    label_offset: int,
    task: int,
) -> dict[str, np.ndarray]:
    image = np.asarray(example["image"])
    if transform is not None:
        image = transform(image)
    inputs = image_streams.to_sequence(image, order)
    return {
        "inputs": inputs,
        "lengths": np.int32(inputs.shape[0]),
        "targets": np.int32(int(example["label"]) + label_offset),
        "task": np.int32(task),
    }


def _parity_record(
    example: dict[str, np.ndarray], *, label_offset: int, task: int
) -> dict[str, np.ndarray]:
    bits = np.asarray(example["bits"], np.float32)[:, None]
    return {
        "inputs": bits,
        "lengths": np.int32(bits.shape[0]),
        "targets": np.int32(int(example["label"]) + label_offset),
        "task": np.int32(task),
    }


def _selection(pool: np.ndarray, limit: int, seed: int, split: int, key: int):
    """The first ``limit`` (0: all) of ``pool`` after a shuffle seeded by the keys."""
    rng = np.random.default_rng([seed, _SHUFFLE_TAG, split, key])
    chosen = np.asarray(pool, np.int64)[rng.permutation(len(pool))]
    return chosen[:limit] if limit else chosen


def task_permutation(seed: int, task: int, size: int = 784) -> np.ndarray:
    """The pixel permutation of task ``task`` of ``permuted_mnist``.

    .. math:: \\pi_k = \\mathrm{default\\_rng}([\\mathrm{seed}, k])
       .\\mathrm{permutation}(HW)

    Args:
      seed: ``data.seed``.
      task: the task index ``k``.
      size: pixels per image (784 for MNIST).

    Returns:
      ``int64 [size]``, a permutation of ``range(size)``.
    """
    return np.random.default_rng([seed, task]).permutation(size)


def _sequence_shape(image_shape: tuple[int, ...], order: str) -> tuple[int, int]:
    height, width = image_shape[:2]
    channels = image_shape[2] if len(image_shape) == 3 else 1
    if order == "rows":
        return height, width * channels
    return height * width, channels


def _image_experience(
    config: config_lib.Config,
    index: int,
    name: str,
    classes: tuple[int, ...],
    data: tuple[_ImageSet, _ImageSet],
    pools: tuple[np.ndarray, np.ndarray],
    *,
    shuffle_key: int,
    order: str,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    label_offset: int = 0,
) -> Experience:
    record = functools.partial(
        _image_record,
        transform=transform,
        order=order,
        label_offset=label_offset,
        task=index,
    )
    limits = (config.cl.train_examples, config.cl.eval_examples)
    splits = []
    for split, (images, pool, limit) in enumerate(
        zip(data, pools, limits, strict=True)
    ):
        chosen = _selection(pool, limit, config.data.seed, split, shuffle_key)
        source = _TaskImages(images, chosen)
        splits.append(grain.MapDataset.source(source).map(record))
    return Experience(index, name, tuple(int(c) for c in classes), *splits)


# --- options -------------------------------------------------------------------------


def _check_options(config: config_lib.Config, stream: str, valid: tuple[str, ...]):
    options = dict(config.data.options)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise config_lib.ConfigError(
            f"data.options: unknown key(s) {unknown} for stream {stream!r}; valid "
            f"keys: {', '.join(valid) or '(none)'}"
        )
    return options


def _choice(options: dict, key: str, choices: tuple[str, ...], default: str) -> str:
    value = options.get(key, default)
    if value not in choices:
        raise config_lib.ConfigError(
            f"data.options[{key!r}] must be one of {choices}, got {value!r}"
        )
    return value


def _tfds_args(config: config_lib.Config, options: dict) -> dict[str, Any]:
    download = options.get("download", False)
    if not isinstance(download, bool):
        raise config_lib.ConfigError(
            f"data.options['download'] must be a bool, got {download!r}"
        )
    data_dir = options.get("tfds_data_dir") or config.data.tfds_data_dir or None
    return {"data_dir": data_dir, "download": download}


def _read_tfds(name: str, split: str, data_dir: str | None, download: bool):
    """Every image and label of a TFDS split as arrays (read once, in order)."""
    source = corpus.open_tfds(name, split, data_dir=data_dir, download=download)
    n = len(source)
    batch_read = getattr(source, "__getitems__", None)
    images, labels = [], []
    for start in range(0, n, _READ_CHUNK):
        positions = list(range(start, min(n, start + _READ_CHUNK)))
        if batch_read is not None:
            examples = batch_read(positions)
        else:
            examples = [source[i] for i in positions]
        for example in examples:
            images.append(np.asarray(example["image"], np.uint8))
            labels.append(int(example["label"]))
    if not images:
        raise config_lib.ConfigError(f"TFDS {name!r} split {split!r} is empty")
    return _ImageSet(np.stack(images), np.asarray(labels, np.int64))


def _gray(data: _ImageSet) -> _ImageSet:
    """Drops a trailing channel axis of 1 (TFDS MNIST is ``[28, 28, 1]``)."""
    images = data.images
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    return _ImageSet(images, data.labels)


def _mnist_data(config: config_lib.Config, options: dict):
    """MNIST (train, test) image sets as ``data.options`` asks."""
    mode = _choice(options, "splits", SPLIT_MODES, "standard")
    directory = options.get("mnist_dir") or os.environ.get(mnist.ENV_VAR) or None

    def load(split: str) -> _ImageSet:
        if directory is not None:
            images, labels = mnist.load_idx(split, directory)
            return _ImageSet(images, labels.astype(np.int64))
        return _gray(_read_tfds("mnist", split, **_tfds_args(config, options)))

    if mode == "standard":
        return load("train"), load("test")
    t10k = load("test")
    test_size = min(T10K_TEST_SIZE, len(t10k.labels) // 5)
    train_idx, test_idx = corpus.holdout_indices(
        len(t10k.labels), test_size, config.data.seed
    )
    return (
        _ImageSet(t10k.images[train_idx], t10k.labels[train_idx]),
        _ImageSet(t10k.images[test_idx], t10k.labels[test_idx]),
    )


def _image_shape(data: tuple[_ImageSet, _ImageSet], order: str) -> tuple[int, int]:
    return _sequence_shape(data[0].images.shape[1:], order)


# --- the streams ---------------------------------------------------------------------


def _all(data: tuple[_ImageSet, _ImageSet]) -> tuple[np.ndarray, np.ndarray]:
    return tuple(np.arange(len(d.labels)) for d in data)


def _transformed_mnist(
    config: config_lib.Config,
    setting: str,
    num_tasks: int,
    options: dict,
    *,
    stream: str,
    rotated: bool,
) -> Stream:
    order = _choice(options, "order", image_streams.ORDERS, "rows")
    data = _mnist_data(config, options)
    pools = _all(data)
    size = int(np.prod(data[0].images.shape[1:3]))
    angles = image_streams.rotation_angles(num_tasks)
    experiences = []
    for k in range(num_tasks):
        if rotated:
            transform = functools.partial(image_streams.rotate, degrees=angles[k])
            name = f"rot {angles[k]:g}"
        else:
            permutation = task_permutation(config.data.seed, k, size)
            transform = functools.partial(
                image_streams.permute_pixels, permutation=permutation
            )
            name = f"perm {k}"
        offset = mnist.NUM_CLASSES * k if setting == "task" else 0
        classes = tuple(range(offset, offset + mnist.NUM_CLASSES))
        experiences.append(
            _image_experience(
                config,
                k,
                name,
                classes,
                data,
                pools,
                shuffle_key=0,  # every task: the same images
                order=order,
                transform=transform,
                label_offset=offset,
            )
        )
    num_classes = mnist.NUM_CLASSES * (num_tasks if setting == "task" else 1)
    seq_len, features = _image_shape(data, order)
    return Stream(stream, setting, tuple(experiences), num_classes, features, seq_len)


def _permuted_mnist(config, setting, num_tasks, options) -> Stream:
    return _transformed_mnist(
        config, setting, num_tasks, options, stream="permuted_mnist", rotated=False
    )


def _rotated_mnist(config, setting, num_tasks, options) -> Stream:
    return _transformed_mnist(
        config, setting, num_tasks, options, stream="rotated_mnist", rotated=True
    )


def _split(
    config: config_lib.Config,
    setting: str,
    num_tasks: int,
    options: dict,
    *,
    stream: str,
    data: tuple[_ImageSet, _ImageSet],
    total_classes: int,
    per_task: int,
    label: str,
) -> Stream:
    order = _choice(options, "order", image_streams.ORDERS, "rows")
    experiences = []
    for k in range(num_tasks):
        classes = tuple(range(k * per_task, (k + 1) * per_task))
        pools = tuple(
            image_streams.class_subset_indices(d.labels, classes) for d in data
        )
        name = f"{label} {classes[0]}-{classes[-1]}"
        experiences.append(
            _image_experience(
                config, k, name, classes, data, pools, shuffle_key=k, order=order
            )
        )
    seq_len, features = _image_shape(data, order)
    return Stream(stream, setting, tuple(experiences), total_classes, features, seq_len)


def _check_max_tasks(stream: str, num_tasks: int, maximum: int) -> None:
    if num_tasks > maximum:
        raise config_lib.ConfigError(
            f"cl.num_tasks={num_tasks} is too many for stream {stream!r}: at most "
            f"{maximum}"
        )


def _split_mnist(config, setting, num_tasks, options) -> Stream:
    _check_max_tasks("split_mnist", num_tasks, 5)
    return _split(
        config,
        setting,
        num_tasks,
        options,
        stream="split_mnist",
        data=_mnist_data(config, options),
        total_classes=mnist.NUM_CLASSES,
        per_task=2,
        label="digits",
    )


def _cifar_data(config, options, name: str) -> tuple[_ImageSet, _ImageSet]:
    args = _tfds_args(config, options)
    return _read_tfds(name, "train", **args), _read_tfds(name, "test", **args)


def _split_cifar10(config, setting, num_tasks, options) -> Stream:
    _check_max_tasks("split_cifar10", num_tasks, 5)
    return _split(
        config,
        setting,
        num_tasks,
        options,
        stream="split_cifar10",
        data=_cifar_data(config, options, "cifar10"),
        total_classes=10,
        per_task=2,
        label="classes",
    )


def _split_cifar100(config, setting, num_tasks, options) -> Stream:
    if 100 % num_tasks:
        raise config_lib.ConfigError(
            f"cl.num_tasks={num_tasks} must divide the 100 classes of stream "
            "'split_cifar100' (e.g. 5, 10, 20)"
        )
    return _split(
        config,
        setting,
        num_tasks,
        options,
        stream="split_cifar100",
        data=_cifar_data(config, options, "cifar100"),
        total_classes=100,
        per_task=100 // num_tasks,
        label="classes",
    )


def _parity_sizes(options: dict) -> tuple[int, int]:
    sizes = options.get("sizes", PARITY_SIZES)
    if (
        not isinstance(sizes, list | tuple)
        or len(sizes) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in sizes)
        or min(sizes) < 1
    ):
        raise config_lib.ConfigError(
            "data.options['sizes'] must be [train, test] sequences per task (ints "
            f">= 1), got {sizes!r}"
        )
    return tuple(sizes)


def _parity_stream(config, setting, num_tasks, options) -> Stream:
    length = config.data.seq_len
    largest = 2 + num_tasks - 1
    if length < largest:
        raise config_lib.ConfigError(
            f"data.seq_len={length} is shorter than the largest N={largest} of "
            f"cl.num_tasks={num_tasks} parity tasks (N = 2..{largest})"
        )
    sizes = _parity_sizes(options)
    limits = (config.cl.train_examples, config.cl.eval_examples)
    seed = config.data.seed
    experiences = []
    for k in range(num_tasks):
        n = 2 + k
        offset = 2 * k if setting == "task" else 0
        record = functools.partial(_parity_record, label_offset=offset, task=k)
        splits = []
        for split, (size, limit) in enumerate(zip(sizes, limits, strict=True)):
            rng = np.random.default_rng([seed, _PARITY_TAG, split, k])
            batch = parity.make_batch(rng, [n], size, task="parity", length=length)
            arrays = {
                "bits": batch["inputs"][..., 0].astype(np.uint8),
                "label": batch["targets"][:, 0],
            }
            chosen = _selection(np.arange(size), limit, seed, split, k)
            source = sources.ArraySource({a: v[chosen] for a, v in arrays.items()})
            splits.append(grain.MapDataset.source(source).map(record))
        experiences.append(Experience(k, f"N={n}", (offset, offset + 1), *splits))
    num_classes = 2 * (num_tasks if setting == "task" else 1)
    return Stream("parity_stream", setting, tuple(experiences), num_classes, 1, length)


_MNIST_OPTIONS = ("mnist_dir", "splits", "order", "tfds_data_dir", "download")
_CIFAR_OPTIONS = ("order", "tfds_data_dir", "download")

STREAMS: dict[str, StreamInfo] = {
    "permuted_mnist": StreamInfo(
        _permuted_mnist, ("domain", "task"), "domain", 10, _MNIST_OPTIONS
    ),
    "rotated_mnist": StreamInfo(
        _rotated_mnist, ("domain", "task"), "domain", 10, _MNIST_OPTIONS
    ),
    "split_mnist": StreamInfo(
        _split_mnist, ("task", "class"), "task", 5, _MNIST_OPTIONS
    ),
    "split_cifar10": StreamInfo(
        _split_cifar10, ("task", "class"), "task", 5, _CIFAR_OPTIONS
    ),
    "split_cifar100": StreamInfo(
        _split_cifar100, ("task", "class"), "task", 10, _CIFAR_OPTIONS
    ),
    "parity_stream": StreamInfo(
        _parity_stream, ("domain", "task"), "domain", 5, ("sizes",)
    ),
}
"""Stream name -> (builder, allowed settings, default setting, default task count,
valid ``data.options`` keys)."""


def make_stream(config: config_lib.Config) -> Stream:
    """The task stream ``config.cl.stream`` (see the module docstring).

    Uses ``cl.stream``, ``cl.setting`` (empty: the stream's default),
    ``cl.num_tasks`` (0: the default), ``cl.train_examples`` /
    ``cl.eval_examples`` (0: all, per task), ``data.seed``, ``data.options``, and
    for ``parity_stream`` ``data.seq_len``.

    Args:
      config: the run's config.

    Returns:
      the :class:`Stream`; its ``experiences`` hold lazy record datasets
      (``inputs`` ``float32 [T, F]``, ``lengths``, ``targets``, ``task``).

    Raises:
      ConfigError: an unknown stream, a setting the stream does not allow, too
        many tasks, an unknown ``data.options`` key or a bad option value.
      FileNotFoundError: an MNIST idx file is missing from ``mnist_dir``.
      RuntimeError: a TFDS dataset cannot be opened.

    Example:
      >>> config = config_lib.Config()
      >>> config.cl.stream, config.cl.num_tasks = "parity_stream", 3
      >>> config.data.seq_len, config.data.options = 16, {"sizes": [32, 8]}
      >>> stream = make_stream(config)
      >>> [e.name for e in stream.experiences], stream.num_classes
      (['N=2', 'N=3', 'N=4'], 2)
    """
    name = config.cl.stream
    if name not in STREAMS:
        raise config_lib.ConfigError(
            f"cl.stream must be one of {', '.join(STREAMS)}, got {name!r}"
        )
    info = STREAMS[name]
    setting = config.cl.setting or info.default_setting
    if setting not in info.settings:
        raise config_lib.ConfigError(
            f"cl.setting={setting!r} is not allowed for stream {name!r}; allowed "
            f"settings: {', '.join(info.settings)}"
        )
    num_tasks = config.cl.num_tasks or info.default_num_tasks
    if num_tasks < 1:
        raise config_lib.ConfigError(
            f"cl.num_tasks must be >= 0 (0: the default), got {num_tasks}"
        )
    options = _check_options(config, name, info.options)
    return info.builder(config, setting, num_tasks, options)
