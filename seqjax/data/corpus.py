"""Where documents come from: the built-in corpus, local files and TFDS.

Three sources of text documents (each a random-access sequence of ``str``):

- :func:`builtin_corpus`: a real corpus present on every Python install, so
  language models train and evaluate offline. *Code*: the ``.py`` files of the
  running Python's standard library (test packages, ``site-packages`` and
  ``pydoc_data`` left out), about 12 MB on CPython 3.11. *Prose*: the English
  help topics of ``pydoc_data.topics`` (what ``help("if")`` prints), about 0.5 MB.
- :func:`text_files`: local files, directories or glob patterns.
- :func:`tfds_text`: a text feature of a TFDS dataset read through
  ``tfds.data_source`` (``lm1b``'s ``text``, say).

The held-out split is *by document*: a document is in ``"validation"`` when the
score of its name,

.. math:: u(\\text{name}) = \\mathrm{int}(\\mathrm{sha256}(
   \\texttt{"seqjax-heldout-v1|"} + \\text{name})[0{:}8]) / 2^{64} \\in [0, 1),

is below ``held_out_fraction``, and in ``"train"`` otherwise. Names are
``"stdlib:<path relative to the stdlib>"`` (``"stdlib:json/decoder.py"``),
``"pydoc:<topic>"`` (``"pydoc:assert"``), or a local file's path relative to the
matched files' common folder. A document keeps its split on every machine and
Python version that has it; versions differ only in which files exist.
Documents are ordered by the same score, which interleaves code and prose
deterministically and makes a ``max_bytes`` cap a pseudo-random sample.

The module also has the TFDS helpers the dataset loaders share:
:func:`open_tfds` (``tfds.data_source`` with a clear error),
:func:`holdout_indices` (a seeded validation split carved out of train) and
:func:`tfds_examples` (train/validation/test records of a TFDS dataset).
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import os
import sysconfig
from collections.abc import Sequence
from typing import Any

import grain
import numpy as np

SPLITS = ("train", "validation", "all")
KINDS = ("code", "prose", "both")
_SALT = b"seqjax-heldout-v1|"
# Folders of the standard library that are not part of the code corpus.
_SKIP_DIRS = frozenset(
    {
        "test",
        "tests",
        "idle_test",
        "site-packages",
        "dist-packages",
        "__pycache__",
        "pydoc_data",  # its topics.py *is* the prose corpus
    }
)


def holdout_score(name: str) -> float:
    """The split score ``u(name)`` in ``[0, 1)`` (see the module docstring).

    Args:
      name: a document name.

    Returns:
      the first 8 bytes of ``sha256(salt + name)`` as a fraction of ``2**64``.
    """
    digest = hashlib.sha256(_SALT + name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_of(name: str, held_out_fraction: float) -> str:
    """``"validation"`` if ``holdout_score(name) < held_out_fraction``, else
    ``"train"``."""
    return "validation" if holdout_score(name) < held_out_fraction else "train"


@dataclasses.dataclass(frozen=True)
class Corpus(Sequence[str]):
    """A random-access list of text documents, read lazily.

    ``corpus[i]`` reads document ``i`` (a file, or a pydoc topic), truncates it
    to ``sizes[i]`` bytes at a character boundary, and decodes it as UTF-8
    (invalid bytes become U+FFFD). Picklable, so grain workers can use it.

    Attributes:
      names: the document names (the split is a function of these).
      locations: a file path, or ``"pydoc:<topic>"``, per document.
      sizes: bytes taken from each document (all of it unless capped; a cut
        document may lose up to 3 more bytes to end on a whole character).
    """

    names: tuple[str, ...]
    locations: tuple[str, ...]
    sizes: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"document {index} out of range for {n} documents.")
        index = int(index) % n
        raw = _read(self.locations[index])
        size = self.sizes[index]
        if size < len(raw):
            # Cut at a character boundary: step back over continuation bytes.
            back = 0
            while back < 3 and size - back > 0 and (raw[size - back] & 0xC0) == 0x80:
                back += 1
            raw = raw[: size - back]
        return raw.decode("utf-8", errors="replace")

    @property
    def total_bytes(self) -> int:
        """Bytes in the corpus (sum of ``sizes``)."""
        return int(sum(self.sizes))

    def __repr__(self) -> str:
        return f"Corpus({len(self)} documents, {self.total_bytes} bytes)"


def _read(location: str) -> bytes:
    if location.startswith("pydoc:"):
        return _pydoc_topics()[location[len("pydoc:") :]].encode("utf-8")
    with open(location, "rb") as f:
        return f.read()


def _pydoc_topics() -> dict[str, str]:
    from pydoc_data import topics

    return topics.topics


def _check_split(split: str, held_out_fraction: float) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
    if not 0.0 <= held_out_fraction < 1.0:
        raise ValueError(
            f"held_out_fraction must be in [0, 1), got {held_out_fraction!r}."
        )


def _select(
    entries: list[tuple[str, str, int]],
    split: str,
    held_out_fraction: float,
    max_bytes: int | None,
) -> Corpus:
    """Keeps ``split``, orders by score, applies the byte cap."""
    if max_bytes is not None and (
        isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1
    ):
        raise ValueError(
            f"max_bytes must be None or a positive int, got {max_bytes!r}."
        )
    scored = sorted(
        (holdout_score(name), name, loc, size) for name, loc, size in entries
    )
    chosen, total = [], 0
    for u, name, loc, size in scored:
        in_validation = u < held_out_fraction
        if (
            split == "train"
            and in_validation
            or split == "validation"
            and not in_validation
        ):
            continue
        if max_bytes is not None:
            if total >= max_bytes:
                break
            size = min(size, max_bytes - total)
        chosen.append((name, loc, size))
        total += size
    names, locs, sizes = zip(*chosen, strict=True) if chosen else ((), (), ())
    return Corpus(tuple(names), tuple(locs), tuple(sizes))


def stdlib_root() -> str:
    """The folder of the running Python's standard library sources."""
    return sysconfig.get_paths()["stdlib"]


def _stdlib_entries() -> list[tuple[str, str, int]]:
    root = stdlib_root()
    entries = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        for file in sorted(files):
            if file.endswith(".py"):
                path = os.path.join(folder, file)
                rel = os.path.relpath(path, root).replace(os.sep, "/")
                entries.append((f"stdlib:{rel}", path, os.path.getsize(path)))
    return entries


def _pydoc_entries() -> list[tuple[str, str, int]]:
    return [
        (f"pydoc:{key}", f"pydoc:{key}", len(text.encode("utf-8")))
        for key, text in sorted(_pydoc_topics().items())
    ]


def builtin_corpus(
    split: str = "train",
    *,
    kind: str = "both",
    held_out_fraction: float = 0.1,
    max_bytes: int | None = None,
) -> Corpus:
    """The built-in corpus: standard-library code and pydoc prose.

    Args:
      split: ``"train"``, ``"validation"`` (documents with score below
        ``held_out_fraction``) or ``"all"``.
      kind: ``"code"`` (stdlib ``.py`` files), ``"prose"`` (pydoc topics) or
        ``"both"``.
      held_out_fraction: expected fraction of documents held out, in ``[0, 1)``.
      max_bytes: keep documents, in score order, until this many bytes (the last
        one truncated); ``None`` keeps all.

    Returns:
      a :class:`Corpus` of the selected documents, ordered by score.

    Raises:
      ValueError: unknown ``split`` or ``kind``, or a bad fraction or cap.

    Example:
      >>> train = builtin_corpus("train", kind="prose")
      >>> held_out = builtin_corpus("validation", kind="prose")
      >>> set(train.names).isdisjoint(held_out.names)
      True
    """
    _check_split(split, held_out_fraction)
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}.")
    entries = []
    if kind in ("code", "both"):
        entries += _stdlib_entries()
    if kind in ("prose", "both"):
        entries += _pydoc_entries()
    return _select(entries, split, held_out_fraction, max_bytes)


def text_files(
    patterns: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    split: str = "all",
    held_out_fraction: float = 0.1,
    max_bytes: int | None = None,
) -> Corpus:
    """Local text files as documents, one per file.

    Args:
      patterns: a file, a folder (every file below it), or a glob pattern
        (``**`` recursive), or a list of them.
      split: ``"all"`` (default), ``"train"`` or ``"validation"``, by the score
        of each file's path relative to the common folder of all matched files.
      held_out_fraction: as in :func:`builtin_corpus`.
      max_bytes: as in :func:`builtin_corpus`.

    Returns:
      a :class:`Corpus`, ordered by score.

    Raises:
      FileNotFoundError: a pattern matches no file.
      ValueError: bad ``split``, fraction or cap.

    Example:
      >>> docs = text_files("notes/**/*.md", split="train")  # doctest: +SKIP
    """
    _check_split(split, held_out_fraction)
    if isinstance(patterns, str | os.PathLike):
        patterns = [patterns]
    paths: list[str] = []
    for pattern in patterns:
        pattern = os.fspath(pattern)
        if os.path.isdir(pattern):
            found = [
                os.path.join(folder, f)
                for folder, _, files in os.walk(pattern)
                for f in files
            ]
        else:
            found = [p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p)]
        if not found:
            raise FileNotFoundError(f"patterns: {pattern!r} matches no file.")
        paths += found
    paths = sorted({os.path.abspath(p) for p in paths})
    base = os.path.commonpath([os.path.dirname(p) for p in paths])
    entries = [
        (os.path.relpath(p, base).replace(os.sep, "/"), p, os.path.getsize(p))
        for p in paths
    ]
    return _select(entries, split, held_out_fraction, max_bytes)


def open_tfds(
    name: str, split: str, *, data_dir: str | None = None, download: bool = False
) -> Any:
    """``tfds.data_source(name, split=split)``, with an error that says what to do.

    Args:
      name: a TFDS dataset name (``"lm1b"``, ``"imdb_reviews"``, ``"mnist"``).
      split: a TFDS split (``"train"``, ``"test"``, ...).
      data_dir: where the prepared dataset lives (TFDS's default if ``None``).
      download: let TFDS download and prepare it if missing.

    Returns:
      the random-access data source (``len`` and ``[i] -> dict``).

    Raises:
      RuntimeError: the dataset cannot be opened (not prepared, say).
    """
    import tensorflow_datasets as tfds

    try:
        return tfds.data_source(name, split=split, data_dir=data_dir, download=download)
    except Exception as error:  # noqa: BLE001 - re-raised with advice
        raise RuntimeError(
            f"could not open TFDS dataset {name!r}, split {split!r} "
            f"(data_dir={data_dir!r}): {error}. Prepare it once with network "
            f"access (`tfds build {name}`, or download=True) and pass the folder "
            "as data_dir."
        ) from error


def holdout_indices(
    num_examples: int, validation_size: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Splits ``range(num_examples)`` into train and validation indices.

    The validation indices are the first ``validation_size`` entries of
    ``np.random.default_rng(seed).permutation(num_examples)``; both parts are
    returned sorted, so reading stays in file order.

    Args:
      num_examples: size of the original training split.
      validation_size: how many to hold out, in ``[0, num_examples)``.
      seed: the permutation's seed.

    Returns:
      ``(train_indices, validation_indices)``, ``int64``, disjoint, covering
      ``range(num_examples)``.

    Raises:
      ValueError: ``validation_size`` out of range.
    """
    if not 0 <= validation_size < num_examples:
        raise ValueError(
            f"validation_size must be in [0, {num_examples}) for a split of "
            f"{num_examples} examples, got {validation_size}."
        )
    perm = np.random.default_rng(seed).permutation(num_examples)
    return np.sort(perm[validation_size:]), np.sort(perm[:validation_size])


class TfdsText(Sequence[str]):
    """A text feature of a TFDS split as a random-access list of ``str``.

    Args:
      name: TFDS dataset name (``"lm1b"``).
      split: TFDS split (``"train"``, ``"test"``).
      feature: the text feature (``"text"``).
      data_dir: folder of the prepared dataset.
      max_documents: keep only the first this many documents.
      download: as in :func:`open_tfds`.

    Raises:
      RuntimeError: the dataset cannot be opened.
      ValueError: ``feature`` is not a feature of the dataset.
    """

    def __init__(
        self,
        name: str,
        split: str,
        *,
        feature: str = "text",
        data_dir: str | None = None,
        max_documents: int | None = None,
        download: bool = False,
    ):
        self.name, self.split, self.feature = name, split, feature
        self.source = open_tfds(name, split, data_dir=data_dir, download=download)
        n = len(self.source)
        self._len = n if max_documents is None else min(n, int(max_documents))
        if self._len and feature not in self.source[0]:
            raise ValueError(
                f"feature must be one of {sorted(self.source[0])} for {name!r}, "
                f"got {feature!r}."
            )

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if not -self._len <= index < self._len:
            raise IndexError(f"document {index} out of range for {self._len}.")
        value = self.source[int(index) % self._len][self.feature]
        if isinstance(value, np.ndarray):
            value = value.item()
        if isinstance(value, bytes):
            return value.decode("utf-8", errors="replace")
        return str(value)

    def __repr__(self) -> str:
        return f"TfdsText({self.name!r}, {self.split!r}, {len(self)} documents)"


def tfds_text(
    name: str,
    split: str,
    *,
    feature: str = "text",
    data_dir: str | None = None,
    max_documents: int | None = None,
    download: bool = False,
) -> TfdsText:
    """Documents from a TFDS text dataset, read lazily via ``tfds.data_source``.

    Args: as :class:`TfdsText`.

    Returns:
      a :class:`TfdsText` (``len`` and ``[i] -> str``).

    Raises:
      RuntimeError, ValueError: as :class:`TfdsText`.

    Example:
      >>> docs = tfds_text("lm1b", "train", max_documents=10_000)  # doctest: +SKIP
    """
    return TfdsText(
        name,
        split,
        feature=feature,
        data_dir=data_dir,
        max_documents=max_documents,
        download=download,
    )


class IndexedSource:
    """``source[indices[i]]`` as a random-access source (a grain data source).

    Args:
      source: anything with ``[int]`` (a TFDS data source, a list).
      indices: ``[n]`` integer positions into ``source``.
    """

    def __init__(self, source: Any, indices: np.ndarray):
        self.source = source
        self.indices = np.asarray(indices, np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Any:
        return self.source[int(self.indices[index])]

    def __repr__(self) -> str:
        return f"IndexedSource({self.source!r}, {len(self)} indices)"


def tfds_examples(
    name: str,
    split: str,
    transform: Any,
    *,
    validation_size: int,
    seed: int = 0,
    data_dir: str | None = None,
    download: bool = False,
) -> grain.MapDataset:
    """Records of a TFDS dataset with a validation split carved out of train.

    ``"train"`` and ``"validation"`` are the two parts of TFDS ``train`` given by
    :func:`holdout_indices` (``validation_size``, ``seed``); ``"test"`` is TFDS
    ``test``. Each TFDS example is passed through ``transform``.

    Args:
      name: TFDS dataset name.
      split: ``"train"``, ``"validation"`` or ``"test"``.
      transform: ``example dict -> record dict``; picklable (a module-level
        function or a ``functools.partial`` of one) for grain workers.
      validation_size: examples held out of TFDS ``train``.
      seed: seed of the held-out permutation.
      data_dir: folder of the prepared TFDS dataset.
      download: as in :func:`open_tfds`.

    Returns:
      a ``grain.MapDataset`` of records.

    Raises:
      ValueError: unknown ``split``, or ``"validation"`` with
        ``validation_size == 0``, or ``validation_size`` too large.
      RuntimeError: the dataset cannot be opened.
    """
    if split not in ("train", "validation", "test"):
        raise ValueError(
            f"split must be 'train', 'validation' or 'test', got {split!r}."
        )
    if split == "validation" and validation_size == 0:
        raise ValueError("split='validation' needs validation_size > 0, got 0.")
    tfds_split = "test" if split == "test" else "train"
    source = open_tfds(name, tfds_split, data_dir=data_dir, download=download)
    if split == "test":
        indices = np.arange(len(source))
    else:
        train, validation = holdout_indices(len(source), validation_size, seed)
        indices = train if split == "train" else validation
    return grain.MapDataset.source(IndexedSource(source, indices)).map(transform)
