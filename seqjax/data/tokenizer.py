"""Tokenizers: text to integer ids and back; byte-level by default.

The id layout of :class:`ByteTokenizer` (the default everywhere in ``seqjax.data``):

====================  ===========================================================
id                    meaning
====================  ===========================================================
``0`` (``PAD_ID``)    padding; never produced by ``encode``
``1`` (``BOS_ID``)    beginning of a document (``encode(..., add_bos=True)``)
``2`` (``EOS_ID``)    end of a document (``encode(..., add_eos=True)``)
``3 ... 258``         the UTF-8 byte ``b`` is the id ``b + 3`` (``OFFSET``)
====================  ===========================================================

so ``vocab_size == 259``. Keeping ``0`` for padding means a padded row never
confuses padding with the byte ``0x00``, and the special ids sit below the bytes,
as in ByT5 ("ByT5: Towards a token-free future with pre-trained byte-to-byte
models", Xue et al. 2022). The Long Range Arena byte tasks used ``byte + 1`` with
``0`` for padding; the offset differs, the information does not.

Another tokenizer plugs in by following the small :class:`Tokenizer` protocol
(``encode``, ``decode``, ``vocab_size``, ``pad_id``, ``bos_id``, ``eos_id``).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

PAD_ID = 0
BOS_ID = 1
EOS_ID = 2
OFFSET = 3


@runtime_checkable
class Tokenizer(Protocol):
    """What ``seqjax.data`` needs from a tokenizer.

    Attributes:
      vocab_size: number of ids; every id is in ``[0, vocab_size)``.
      pad_id: the padding id (packing and padding fill with it).
      bos_id: id put before a document, or ``None`` if there is none.
      eos_id: id put after a document, or ``None`` if there is none.
    """

    vocab_size: int
    pad_id: int
    bos_id: int | None
    eos_id: int | None

    def encode(
        self, text: str | bytes, *, add_bos: bool = False, add_eos: bool = False
    ) -> np.ndarray:
        """Returns the ids of ``text`` as a 1-D ``int32`` array."""
        ...

    def decode(self, ids: np.ndarray) -> str:
        """Returns the text of ``ids`` (special ids dropped)."""
        ...


class ByteTokenizer:
    """Byte-level tokenizer: each UTF-8 byte is one token, offset by 3.

    .. math:: \\mathrm{id}(b) = b + 3,\\quad b \\in \\{0,\\dots,255\\};
       \\quad \\mathrm{PAD}=0,\\ \\mathrm{BOS}=1,\\ \\mathrm{EOS}=2.

    ``encode`` accepts ``str`` (encoded as UTF-8) or ``bytes`` (taken as they
    are). ``decode`` drops the special ids and decodes the bytes as UTF-8,
    replacing invalid sequences with U+FFFD, so any id sequence decodes (a
    truncated multi-byte character, say).

    Example:
      >>> tok = ByteTokenizer()
      >>> ids = tok.encode("hé", add_eos=True)
      >>> ids.tolist()
      [107, 198, 172, 2]
      >>> tok.decode(ids)
      'hé'

    References:
      "ByT5: Towards a token-free future with pre-trained byte-to-byte models"
      (Xue et al., 2022) for the layout with the special ids below the bytes.
    """

    vocab_size: int = 256 + OFFSET
    pad_id: int = PAD_ID
    bos_id: int | None = BOS_ID
    eos_id: int | None = EOS_ID

    def encode(
        self, text: str | bytes, *, add_bos: bool = False, add_eos: bool = False
    ) -> np.ndarray:
        """Encodes ``text`` into byte ids.

        Args:
          text: a ``str`` (encoded as UTF-8) or ``bytes``/``bytearray``/
            ``memoryview`` (used as they are).
          add_bos: put ``BOS_ID`` first.
          add_eos: put ``EOS_ID`` last.

        Returns:
          ``int32`` array of shape ``[len(utf8_bytes) + add_bos + add_eos]``.

        Raises:
          TypeError: ``text`` is neither text nor bytes.
        """
        if isinstance(text, str):
            raw = text.encode("utf-8")
        elif isinstance(text, bytes | bytearray | memoryview):
            raw = bytes(text)
        else:
            raise TypeError(
                f"text must be str or bytes, got {type(text).__name__}: {text!r:.80}"
            )
        body = np.frombuffer(raw, dtype=np.uint8).astype(np.int32) + OFFSET
        parts = []
        if add_bos:
            parts.append(np.array([BOS_ID], np.int32))
        parts.append(body)
        if add_eos:
            parts.append(np.array([EOS_ID], np.int32))
        return np.concatenate(parts) if len(parts) > 1 else body

    def decode_bytes(self, ids: np.ndarray) -> bytes:
        """Returns the raw bytes of ``ids``, special ids dropped.

        Args:
          ids: integer array-like of any shape (flattened), ids in
            ``[0, vocab_size)``.

        Returns:
          the bytes ``ids - 3`` for the non-special ids.

        Raises:
          TypeError: ``ids`` is not an integer array.
          ValueError: an id is outside ``[0, vocab_size)``.
        """
        ids = np.asarray(ids)
        if ids.size == 0:
            return b""
        if not np.issubdtype(ids.dtype, np.integer):
            raise TypeError(f"ids must be integers, got dtype {ids.dtype}.")
        ids = ids.reshape(-1).astype(np.int64)
        bad = (ids < 0) | (ids >= self.vocab_size)
        if bad.any():
            raise ValueError(
                f"ids must be in [0, {self.vocab_size}), got {ids[bad][:5].tolist()}."
            )
        return (ids[ids >= OFFSET] - OFFSET).astype(np.uint8).tobytes()

    def decode(self, ids: np.ndarray) -> str:
        """Decodes ids to text: specials dropped, invalid UTF-8 replaced.

        Args:
          ids: integer array-like, ids in ``[0, vocab_size)``.

        Returns:
          the decoded ``str``; invalid UTF-8 becomes U+FFFD.

        Raises:
          TypeError: ``ids`` is not an integer array.
          ValueError: an id is outside ``[0, vocab_size)``.
        """
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def __repr__(self) -> str:
        return "ByteTokenizer(vocab_size=259, pad=0, bos=1, eos=2, offset=3)"
