"""LRA Retrieval: do two ACL Anthology Network (AAN) papers cite each other?

Read from the TSV files of the Long Range Arena release
(``lra_release/tsv_data/new_aan_pairs.{train,eval,test}.tsv``; the train file is
about 8.5 GB). Each line is one pair, five tab-separated fields, no header:

=========  =====================================================================
``label``  ``0`` or ``1`` (written as a number; LRA parsed it as a float)
``id1``    AAN identifier of the first paper
``id2``    AAN identifier of the second paper
``text1``  the first paper's text
``text2``  the second paper's text
=========  =====================================================================

LRA read the fields with no quote handling (``use_quote_delim=False``), so a
field is the bytes between two tabs. The text fields hold Python bytes literals
(``b'...'``, newlines escaped as ``\\n``): LRA, and S4/S5 after it, fed those
characters to the model as they are, quotes and escapes included. That is
``text_format="raw"`` (default, comparable with published numbers);
``text_format="decoded"`` evaluates the literal (``ast.literal_eval``) and feeds
the paper's own bytes. (Layout checked against LRA's input pipeline and
third-party loaders of the release; the release itself is not reachable here.)

Each text becomes byte tokens (:class:`ByteTokenizer`: byte ``b`` is ``b + 3``,
``0`` is padding), truncated to ``max_length`` (4000 in LRA) and padded:

.. math:: \\mathrm{inputs}_k[t] = \\mathrm{text}_k[t] + 3\\ (t < \\mathrm{lengths}_k),
   \\quad 0\\ \\text{otherwise},\\qquad k \\in \\{1, 2\\}.

Records: ``{"inputs1", "inputs2": int32[max_length], "lengths1", "lengths2":
int32, "targets": int32}``; two classes.

Files are streamed, never read whole: :func:`iter_aan_pairs` reads line by line;
:class:`AanPairs` scans a file once for line offsets (8 bytes per pair, optionally
cached on disk), then reads pair ``i`` with one seek, which gives grain global
shuffling and exact resume.

References:
  "Long Range Arena: A Benchmark for Efficient Transformers" (Tay et al., 2021);
  "The ACL Anthology Network Corpus" (Radev et al., 2013).
"""

from __future__ import annotations

import ast
import hashlib
import io
import os
from collections.abc import Iterator
from typing import BinaryIO

import grain
import numpy as np

from seqjax.data import tokenizer as tokenizer_lib

MAX_LENGTH = 4000
NUM_CLASSES = 2
COLUMNS = ("label", "id1", "id2", "text1", "text2")
FILES = {
    "train": "new_aan_pairs.train.tsv",
    "validation": "new_aan_pairs.eval.tsv",
    "test": "new_aan_pairs.test.tsv",
}
TEXT_FORMATS = ("raw", "decoded")
_TOKENIZER = tokenizer_lib.ByteTokenizer()


def _text_bytes(field: bytes, text_format: str, where: str) -> bytes:
    if text_format == "raw":
        return field
    if field[:2] in (b"b'", b'b"'):
        try:
            value = ast.literal_eval(field.decode("ascii"))
        except (ValueError, SyntaxError, UnicodeDecodeError) as error:
            raise ValueError(
                f"{where}: text is not a valid bytes literal ({error})."
            ) from error
        if isinstance(value, bytes):
            return value
    return field


def parse_line(
    line: bytes,
    *,
    max_length: int = MAX_LENGTH,
    text_format: str = "raw",
    where: str = "line",
) -> dict[str, np.ndarray]:
    """One TSV line to a record.

    Args:
      line: the line's bytes (a trailing newline is ignored).
      max_length: tokens kept per text.
      text_format: ``"raw"`` or ``"decoded"`` (see the module docstring).
      where: where the line is from, for error messages (``"file:line"``).

    Returns:
      ``{"inputs1", "inputs2": int32[max_length], "lengths1", "lengths2": int32,
      "targets": int32}``.

    Raises:
      ValueError: not five fields, a label other than 0/1, or (``"decoded"``) a
        malformed bytes literal.

    Example:
      >>> r = parse_line(b"1\\tA\\tB\\tb'hi'\\tb'yo'\\n", max_length=8)
      >>> r["inputs1"][:6].tolist(), int(r["lengths1"]), int(r["targets"])
      ([101, 42, 107, 108, 42, 0], 5, 1)
    """
    fields = line.rstrip(b"\r\n").split(b"\t")
    if len(fields) != len(COLUMNS):
        raise ValueError(
            f"{where}: expected {len(COLUMNS)} tab-separated fields "
            f"{COLUMNS}, got {len(fields)}."
        )
    try:
        label = float(fields[0])
    except ValueError:
        label = float("nan")
    if label not in (0.0, 1.0):
        raise ValueError(f"{where}: label must be 0 or 1, got {fields[0][:20]!r}.")
    record = {}
    for k, field in ((1, fields[3]), (2, fields[4])):
        ids = _TOKENIZER.encode(_text_bytes(field, text_format, where))[:max_length]
        padded = np.zeros(max_length, np.int32)
        padded[: len(ids)] = ids
        record[f"inputs{k}"] = padded
        record[f"lengths{k}"] = np.int32(len(ids))
    record["targets"] = np.int32(label)
    return record


def _check(max_length: int, text_format: str) -> None:
    if isinstance(max_length, bool) or not isinstance(max_length, int):
        raise ValueError(f"max_length must be a positive int, got {max_length!r}.")
    if max_length < 1:
        raise ValueError(f"max_length must be a positive int, got {max_length}.")
    if text_format not in TEXT_FORMATS:
        raise ValueError(
            f"text_format must be one of {TEXT_FORMATS}, got {text_format!r}."
        )


def iter_aan_pairs(
    path_or_file: str | os.PathLike | BinaryIO,
    *,
    max_length: int = MAX_LENGTH,
    text_format: str = "raw",
) -> Iterator[dict[str, np.ndarray]]:
    """Streams the records of one TSV file, one line at a time.

    Blank lines are skipped. Memory stays at one line whatever the file size.

    Args:
      path_or_file: a TSV path, or a binary file object positioned at a line
        start.
      max_length: tokens kept per text.
      text_format: ``"raw"`` or ``"decoded"``.

    Yields:
      records as :func:`parse_line` returns them.

    Raises:
      ValueError: bad arguments, or a malformed line (its line number named).

    Example:
      >>> for record in iter_aan_pairs("new_aan_pairs.eval.tsv"):  # doctest: +SKIP
      ...     break
    """
    _check(max_length, text_format)
    if isinstance(path_or_file, str | os.PathLike):
        name = os.fspath(path_or_file)
        with open(name, "rb") as f:
            yield from _iter_lines(f, name, max_length, text_format)
    else:
        name = getattr(path_or_file, "name", "<file>")
        yield from _iter_lines(path_or_file, str(name), max_length, text_format)


def _iter_lines(
    f: BinaryIO, name: str, max_length: int, text_format: str
) -> Iterator[dict[str, np.ndarray]]:
    for number, line in enumerate(f, start=1):
        if line.strip():
            yield parse_line(
                line,
                max_length=max_length,
                text_format=text_format,
                where=f"{name}:{number}",
            )


def line_offsets(path: str | os.PathLike) -> np.ndarray:
    """Byte offsets of the non-blank lines of ``path``, found in one streamed pass.

    Args:
      path: a text file.

    Returns:
      ``int64 [num_lines]``.
    """
    offsets = []
    position = 0
    with open(path, "rb", buffering=io.DEFAULT_BUFFER_SIZE * 128) as f:
        for line in f:
            if line.strip():
                offsets.append(position)
            position += len(line)
    return np.asarray(offsets, np.int64)


def _cached_offsets(path: str, cache_dir: str | None) -> np.ndarray:
    if cache_dir is None:
        return line_offsets(path)
    stat = os.stat(path)
    key = f"{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}"
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
    base = os.path.basename(path)
    cache = os.path.join(cache_dir, f"{base}-{digest}.offsets.npy")
    if os.path.isfile(cache):
        try:
            return np.load(cache)
        except (OSError, ValueError):
            pass  # unreadable: rebuild below
    offsets = line_offsets(path)
    os.makedirs(cache_dir, exist_ok=True)
    tmp = f"{cache}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        np.save(f, offsets)
    os.replace(tmp, cache)
    return offsets


class AanPairs:
    """Random access to the pairs of one TSV file (a grain data source).

    Built by one streamed pass that records where each line starts;
    ``pairs[i]`` then seeks to line ``i`` and parses it.

    Args:
      path: the TSV file.
      max_length: tokens kept per text.
      text_format: ``"raw"`` or ``"decoded"``.
      cache_dir: if given, the line offsets are saved there (the file name
        carries a hash of the TSV's path, size and modification time) and
        reused.

    Raises:
      FileNotFoundError: ``path`` does not exist.
      ValueError: bad ``max_length``/``text_format``; a malformed line raises
        when it is read.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        max_length: int = MAX_LENGTH,
        text_format: str = "raw",
        cache_dir: str | os.PathLike | None = None,
    ):
        _check(max_length, text_format)
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"path: no file {self.path!r}.")
        self.max_length, self.text_format = max_length, text_format
        cache = None if cache_dir is None else os.fspath(cache_dir)
        self.offsets = _cached_offsets(self.path, cache)

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"pair {index} out of range for {n} pairs.")
        index = int(index) % n
        with open(self.path, "rb") as f:
            f.seek(int(self.offsets[index]))
            line = f.readline()
        return parse_line(
            line,
            max_length=self.max_length,
            text_format=self.text_format,
            where=f"{self.path} pair {index}",
        )

    def __repr__(self) -> str:
        return (
            f"AanPairs({self.path!r}, pairs={len(self)}, "
            f"max_length={self.max_length}, text_format={self.text_format!r})"
        )


def lra_retrieval(
    data_dir: str | os.PathLike,
    split: str = "train",
    *,
    max_length: int = MAX_LENGTH,
    text_format: str = "raw",
    cache_dir: str | os.PathLike | None = None,
) -> grain.MapDataset:
    """LRA Retrieval records of one split, from the release's TSV files.

    Args:
      data_dir: the folder with ``new_aan_pairs.{train,eval,test}.tsv``
        (``lra_release/tsv_data``).
      split: ``"train"``, ``"validation"`` (the release's ``eval`` file) or
        ``"test"``.
      max_length: tokens kept per text (4000 in LRA).
      text_format: ``"raw"`` (as LRA) or ``"decoded"``.
      cache_dir: where to keep the line-offset index (see :class:`AanPairs`).

    Returns:
      a ``grain.MapDataset`` of records (see the module docstring).

    Raises:
      ValueError: unknown ``split`` or bad options.
      FileNotFoundError: the split's file is missing.

    Example:
      >>> ds = lra_retrieval("lra_release/tsv_data", "test")  # doctest: +SKIP
      >>> ds[0]["inputs1"].shape  # doctest: +SKIP
      (4000,)
    """
    if split not in FILES:
        raise ValueError(f"split must be one of {tuple(FILES)}, got {split!r}.")
    path = os.path.join(os.fspath(data_dir), FILES[split])
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"no {FILES[split]} in data_dir={os.fspath(data_dir)!r}; point it at "
            "the lra_release/tsv_data folder of the LRA release."
        )
    source = AanPairs(
        path, max_length=max_length, text_format=text_format, cache_dir=cache_dir
    )
    return grain.MapDataset.source(source)
