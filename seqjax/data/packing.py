"""Packing documents into fixed-length rows for next-token prediction.

A document of tokens :math:`s_0 \\dots s_{n-1}` (usually ``[BOS] + bytes + [EOS]``)
gives :math:`n-1` prediction pairs :math:`(s_j, s_{j+1})`. Packing lays the pairs
of consecutive documents into rows of ``seq_len`` positions, in order:

.. math:: \\mathrm{inputs}[r, c] = s_j,\\quad \\mathrm{targets}[r, c] = s_{j+1}
   \\quad\\text{(same document)}.

Because documents are shifted *before* they are packed, a target is never the
first token of the next document, and no prediction is lost at a row boundary:
when a document continues into the next row, that row's first input is the
previous row's last target. Every row carries

- ``inputs``, ``targets``: ``int32 [seq_len]``, ``pad_id`` after the last pair;
- ``segment_ids``: ``int32 [seq_len]``, ``1, 2, ...`` for the document pieces of
  the row in order, ``0`` for padding (what ``seqjax.nn`` modules reset on);
- ``positions``: ``int32 [seq_len]``, the offset inside the row's piece of the
  document (restarting at ``0`` in each segment, ``0`` on padding);
- ``loss_mask``: ``float32 [seq_len]``, ``1`` where a target exists (every non-pad
  position), ``0`` on padding.

Two layouts (``split_documents``):

- ``True`` (default): a stream; row ``r`` holds pairs ``[r L, (r+1) L)`` of the
  concatenated documents. Only the last row has padding; documents that cross a
  row boundary are split there.
- ``False``: next-fit; a document that does not fit in what is left of the row
  starts a new row (the rest is padded). A document longer than ``seq_len``
  starts a row and is cut into ``seq_len``-sized pieces.

Both are deterministic: the rows depend only on the documents, their order and
``seq_len``. Documents with fewer than two tokens have nothing to predict and
are dropped.

Example:
  >>> rows = pack_documents([[1, 5, 6, 2], [1, 7, 2]], seq_len=4)
  >>> rows["inputs"].tolist()
  [[1, 5, 6, 1], [7, 0, 0, 0]]
  >>> rows["targets"].tolist()
  [[5, 6, 2, 7], [2, 0, 0, 0]]
  >>> rows["segment_ids"].tolist()
  [[1, 1, 1, 2], [1, 0, 0, 0]]

References:
  Packing with segment ids as in "Exploring the Limits of Transfer Learning with
  a Unified Text-to-Text Transformer" (Raffel et al., 2020).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

import grain
import numpy as np

from seqjax.data import tokenizer as tokenizer_lib

FEATURES = ("inputs", "targets", "segment_ids", "positions", "loss_mask")

Document = str | bytes | np.ndarray | Sequence[int]


def _as_tokens(
    doc: Any,
    index: int,
    tok: tokenizer_lib.Tokenizer,
    add_bos: bool,
    add_eos: bool,
) -> np.ndarray:
    """One document as a 1-D integer array (text is tokenized)."""
    if isinstance(doc, str | bytes | bytearray | memoryview):
        return np.asarray(tok.encode(doc, add_bos=add_bos, add_eos=add_eos))
    arr = np.asarray(doc)
    if arr.ndim != 1:
        raise ValueError(
            f"documents[{index}] must be text or a 1-D token array, got shape "
            f"{arr.shape}."
        )
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(
            f"documents[{index}] must hold integer token ids, got dtype {arr.dtype}."
        )
    return arr.astype(np.int64, copy=False)


@dataclasses.dataclass(frozen=True)
class PackPlan:
    """Where every prediction pair goes; built once, read row by row.

    Attributes:
      tokens: ``[num_tokens]`` the kept documents' tokens, concatenated.
      doc_pair_starts: ``[num_docs + 1]`` first pair index of each kept document
        (document ``d`` owns pairs ``[doc_pair_starts[d], doc_pair_starts[d+1])``).
      row_starts: ``[num_rows + 1]`` first pair index of each row.
      seq_len: positions per row.
      pad_id: fill value for ``inputs``/``targets`` on padding.
    """

    tokens: np.ndarray
    doc_pair_starts: np.ndarray
    row_starts: np.ndarray
    seq_len: int
    pad_id: int

    @property
    def num_rows(self) -> int:
        return len(self.row_starts) - 1

    @property
    def num_pairs(self) -> int:
        return int(self.doc_pair_starts[-1])

    def rows(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """Builds rows ``[start, stop)``: each feature ``[stop - start, seq_len]``."""
        n_rows = stop - start
        out = {
            "inputs": np.full((n_rows, self.seq_len), self.pad_id, np.int32),
            "targets": np.full((n_rows, self.seq_len), self.pad_id, np.int32),
            "segment_ids": np.zeros((n_rows, self.seq_len), np.int32),
            "positions": np.zeros((n_rows, self.seq_len), np.int32),
            "loss_mask": np.zeros((n_rows, self.seq_len), np.float32),
        }
        first, last = int(self.row_starts[start]), int(self.row_starts[stop])
        if last == first:
            return out
        k = np.arange(first, last, dtype=np.int64)  # pair indices, in row order
        row = np.searchsorted(self.row_starts, k, side="right") - 1
        col = k - self.row_starts[row]
        doc = np.searchsorted(self.doc_pair_starts, k, side="right") - 1
        # Document d's pairs start at token doc_pair_starts[d] + d (each kept
        # document has one token more than it has pairs).
        t = k + doc
        new = (col == 0) | np.concatenate([[True], doc[1:] != doc[:-1]])
        seg_global = np.cumsum(new)
        seg = seg_global - seg_global[self.row_starts[row] - first] + 1
        piece_start = np.maximum(self.row_starts[row], self.doc_pair_starts[doc])
        r = row - start
        out["inputs"][r, col] = self.tokens[t]
        out["targets"][r, col] = self.tokens[t + 1]
        out["segment_ids"][r, col] = seg
        out["positions"][r, col] = k - piece_start
        out["loss_mask"][r, col] = 1.0
        return out


def plan_packing(
    documents: Iterable[Document],
    seq_len: int,
    *,
    split_documents: bool = True,
    tokenizer: tokenizer_lib.Tokenizer | None = None,
    add_bos: bool = True,
    add_eos: bool = True,
) -> PackPlan:
    """Tokenizes ``documents`` and decides the row of every prediction pair.

    Args:
      documents: an iterable of documents, each text (``str``/``bytes``,
        tokenized with ``tokenizer``) or a 1-D integer token array (used as is:
        ``add_bos``/``add_eos`` do not apply to it).
      seq_len: positions per row, ``>= 1``.
      split_documents: ``True`` for the stream layout, ``False`` for next-fit
        (see the module docstring).
      tokenizer: for text documents; default :class:`ByteTokenizer`.
      add_bos: put the tokenizer's BOS before each text document.
      add_eos: put the tokenizer's EOS after each text document.

    Returns:
      a :class:`PackPlan`; ``plan.rows(i, j)`` builds rows ``i`` to ``j - 1``.

    Raises:
      ValueError: ``seq_len`` is not a positive integer, or a document is not
        1-D.
      TypeError: ``documents`` is a single string, or a token array is not of
        integers.
    """
    if isinstance(seq_len, bool) or not isinstance(seq_len, int | np.integer):
        raise ValueError(f"seq_len must be a positive int, got {seq_len!r}.")
    if seq_len < 1:
        raise ValueError(f"seq_len must be a positive int, got {seq_len}.")
    if isinstance(documents, str | bytes):
        raise TypeError(
            "documents must be an iterable of documents, got a single "
            f"{type(documents).__name__}; wrap it in a list."
        )
    tok = tokenizer if tokenizer is not None else tokenizer_lib.ByteTokenizer()
    kept, pair_counts = [], []
    for i, doc in enumerate(documents):
        arr = _as_tokens(doc, i, tok, add_bos, add_eos)
        if arr.size >= 2:
            kept.append(arr)
            pair_counts.append(arr.size - 1)
    seq_len = int(seq_len)
    max_id = max((int(a.max()) for a in kept), default=0)
    min_id = min((int(a.min()) for a in kept), default=0)
    dtype = np.uint16 if 0 <= min_id and max_id < 2**16 else np.int32
    tokens = np.concatenate(kept).astype(dtype) if kept else np.zeros(0, dtype)
    counts = np.asarray(pair_counts, np.int64)
    doc_pair_starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    total = int(doc_pair_starts[-1])
    if split_documents:
        row_starts = np.append(np.arange(0, total, seq_len, dtype=np.int64), total)
    else:
        starts, used = [], seq_len  # `used == seq_len`: no open row
        for d, m in enumerate(pair_counts):
            begin = int(doc_pair_starts[d])
            if m <= seq_len - used:
                used += m
                continue
            starts.extend(range(begin, begin + m, seq_len))
            used = m - (len(range(0, m, seq_len)) - 1) * seq_len
        row_starts = np.asarray(starts + [total], np.int64)
    return PackPlan(
        tokens=tokens,
        doc_pair_starts=doc_pair_starts,
        row_starts=row_starts,
        seq_len=seq_len,
        pad_id=int(tok.pad_id),
    )


def pack_documents(
    documents: Iterable[Document],
    seq_len: int,
    *,
    split_documents: bool = True,
    tokenizer: tokenizer_lib.Tokenizer | None = None,
    add_bos: bool = True,
    add_eos: bool = True,
) -> dict[str, np.ndarray]:
    """Packs documents into rows of ``seq_len`` next-token-prediction pairs.

    .. math:: \\mathrm{targets}[r, c] = \\mathrm{next\\ token\\ after}\\
       \\mathrm{inputs}[r, c]\\ \\text{in its document}

    Args: as :func:`plan_packing`.

    Returns:
      dict with ``inputs``, ``targets``, ``segment_ids``, ``positions``
      (``int32 [num_rows, seq_len]``) and ``loss_mask`` (``float32``), as
      described in the module docstring.

    Raises:
      ValueError, TypeError: as :func:`plan_packing`.

    Example:
      >>> rows = pack_documents(["ab", "c"], seq_len=8)
      >>> rows["segment_ids"].tolist()
      [[1, 1, 1, 2, 2, 0, 0, 0]]
    """
    plan = plan_packing(
        documents,
        seq_len,
        split_documents=split_documents,
        tokenizer=tokenizer,
        add_bos=add_bos,
        add_eos=add_eos,
    )
    return plan.rows(0, plan.num_rows)


class PackedSource:
    """Random-access packed rows (a grain data source): ``len`` and ``[i]``.

    Rows are built on demand from a :class:`PackPlan`, so memory is the tokens
    (2 bytes each for vocabularies up to 65536) plus two index arrays; row ``i``
    equals ``pack_documents(...)[feature][i]`` for the same arguments.

    Args: as :func:`plan_packing`.

    Example:
      >>> src = PackedSource(["hello", "world"], seq_len=4)
      >>> len(src), src[0]["inputs"].shape
      (3, (4,))
    """

    def __init__(
        self,
        documents: Iterable[Document],
        seq_len: int,
        *,
        split_documents: bool = True,
        tokenizer: tokenizer_lib.Tokenizer | None = None,
        add_bos: bool = True,
        add_eos: bool = True,
    ):
        self.plan = plan_packing(
            documents,
            seq_len,
            split_documents=split_documents,
            tokenizer=tokenizer,
            add_bos=add_bos,
            add_eos=add_eos,
        )

    def __len__(self) -> int:
        return self.plan.num_rows

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        n = len(self)
        if isinstance(index, bool) or not isinstance(index, int | np.integer):
            raise TypeError(f"index must be an int, got {type(index).__name__}.")
        if not -n <= index < n:
            raise IndexError(f"row {index} out of range for {n} rows.")
        index = int(index) % n
        return {k: v[0] for k, v in self.plan.rows(index, index + 1).items()}

    def __repr__(self) -> str:
        return (
            f"PackedSource(rows={len(self)}, seq_len={self.plan.seq_len}, "
            f"pairs={self.plan.num_pairs})"
        )


def shard(
    dataset: grain.MapDataset, process_index: int, process_count: int
) -> grain.MapDataset:
    """This process's equal share of ``dataset``: elements ``i`` with
    ``i % process_count == process_index``, after dropping the last
    ``len % process_count`` elements so every process gets the same count.

    Args:
      dataset: a finite ``grain.MapDataset``.
      process_index: this process, in ``[0, process_count)`` (for JAX:
        ``jax.process_index()``).
      process_count: number of processes (``jax.process_count()``).

    Returns:
      a ``grain.MapDataset`` of ``len(dataset) // process_count`` elements.

    Raises:
      ValueError: bad ``process_index``/``process_count``, or fewer elements
        than processes.
    """
    if not isinstance(process_count, int | np.integer) or process_count < 1:
        raise ValueError(f"process_count must be >= 1, got {process_count!r}.")
    if not isinstance(process_index, int | np.integer) or not (
        0 <= process_index < process_count
    ):
        raise ValueError(
            f"process_index must be in [0, {process_count}), got {process_index!r}."
        )
    per = len(dataset) // process_count
    if per == 0:
        raise ValueError(
            f"dataset has {len(dataset)} elements, fewer than process_count="
            f"{process_count}; use a smaller seq_len or more data."
        )
    return dataset[: per * process_count][process_index::process_count]


def lm_dataset(
    documents: Iterable[Document],
    seq_len: int,
    batch_size: int,
    *,
    seed: int = 0,
    shuffle: bool = True,
    num_epochs: int | None = None,
    process_index: int = 0,
    process_count: int = 1,
    split_documents: bool = True,
    tokenizer: tokenizer_lib.Tokenizer | None = None,
    add_bos: bool = True,
    add_eos: bool = True,
    drop_remainder: bool = True,
) -> grain.MapDataset:
    """A grain pipeline of packed, shuffled, sharded, batched rows.

    Packs with :class:`PackedSource`, keeps this process's shard
    (:func:`shard`), shuffles the shard with ``seed`` (a new order each epoch),
    repeats ``num_epochs`` times (``None``: forever) and batches. Iterate it
    with ``iter(ds.to_iter_dataset())``; the iterator's ``get_state()`` /
    ``set_state()`` give exact resume.

    Args:
      documents, seq_len, split_documents, tokenizer, add_bos, add_eos: as
        :func:`plan_packing`.
      batch_size: rows per batch *on this process*.
      seed: shuffle seed (the same on every process).
      shuffle: shuffle rows; ``False`` keeps the packed order (evaluation).
      num_epochs: passes over the shard; ``None`` repeats forever.
      process_index: this process (``jax.process_index()``).
      process_count: number of processes (``jax.process_count()``).
      drop_remainder: drop a last partial batch.

    Returns:
      a ``grain.MapDataset`` of dicts of ``[batch_size, seq_len]`` arrays.

    Raises:
      ValueError: bad sizes or process arguments (see :func:`shard`).

    Example:
      >>> ds = lm_dataset(["some text"] * 8, seq_len=4, batch_size=2,
      ...                 num_epochs=1)
      >>> ds[0]["inputs"].shape
      (2, 4)
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size}.")
    if num_epochs is not None and num_epochs < 1:
        raise ValueError(f"num_epochs must be None or >= 1, got {num_epochs}.")
    source = PackedSource(
        documents,
        seq_len,
        split_documents=split_documents,
        tokenizer=tokenizer,
        add_bos=add_bos,
        add_eos=add_eos,
    )
    ds = shard(grain.MapDataset.source(source), process_index, process_count)
    if shuffle:
        ds = ds.shuffle(seed=seed)
    ds = ds.repeat(num_epochs)
    return ds.batch(batch_size, drop_remainder=drop_remainder)
