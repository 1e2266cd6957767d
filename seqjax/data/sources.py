"""Random-access sources over numpy arrays, and an on-disk cache for generated data.

``ArraySource`` serves one record at a time from a dict of equal-length arrays; it
satisfies grain's ``RandomAccessDataSource`` protocol (``__len__``, ``__getitem__``,
a ``__repr__`` for checkpointing, picklable) without importing grain.

``cached`` stores the arrays a generator builds as one ``.npz`` file whose name carries
a checksum of the generator settings:

.. math:: \\text{file} = \\text{name} \\Vert \\text{-} \\Vert
   \\operatorname{sha256}(\\operatorname{json}(\\text{name}, \\text{settings},
   \\text{format}))_{0:16} \\Vert \\text{.npz}

It writes to a temporary file in the same directory and renames it into place, so a
crash or a concurrent writer never leaves a half-written file under the final name; a
file that cannot be read back (truncated, corrupt, or written for other settings) is
rebuilt, not crashed on.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import re
import struct
import tempfile
import warnings
import zipfile
import zlib
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

FORMAT_VERSION = 1
"""Bumped whenever the on-disk layout changes; part of every checksum."""

_META_KEY = "__seqjax_cache_meta__"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class ArraySource:
    """Random access to records of a dict of equal-length numpy arrays.

    Record ``i`` is ``{key: arrays[key][i] for key in arrays}``: every array is indexed
    along its first axis, so ``arrays["inputs"]`` of shape ``[n, T]`` yields a ``[T]``
    array per record and ``arrays["targets"]`` of shape ``[n]`` a 0-d array.

    It follows grain's ``RandomAccessDataSource`` protocol, so
    ``grain.MapDataset.source(ArraySource(arrays))`` works directly.

    Args:
        arrays: mapping from field name to an array with a leading record axis of the
            same length ``n`` for every field (at least one field).

    Raises:
        ValueError: if ``arrays`` is empty, a field is 0-d, or the leading lengths
            differ.
        TypeError: if ``arrays`` is not a mapping or a key is not a string.

    Example:
        >>> src = ArraySource({"x": np.zeros((3, 5)), "y": np.arange(3)})
        >>> len(src), src[1]["x"].shape, int(src[1]["y"])
        (3, (5,), 1)
    """

    def __init__(self, arrays: Mapping[str, np.ndarray]) -> None:
        if not isinstance(arrays, Mapping):
            raise TypeError(
                f"arrays must be a mapping of name -> array, got {type(arrays)}"
            )
        if not arrays:
            raise ValueError("arrays must have at least one field, got an empty dict")
        fields: dict[str, np.ndarray] = {}
        length = None
        for key, value in arrays.items():
            if not isinstance(key, str):
                raise TypeError(f"arrays keys must be str, got {key!r}")
            value = np.asarray(value)
            if value.ndim == 0:
                raise ValueError(
                    f"arrays[{key!r}] must have a leading record axis, got a 0-d array"
                )
            if length is None:
                length = value.shape[0]
            elif value.shape[0] != length:
                shapes = {k: np.shape(v) for k, v in arrays.items()}
                raise ValueError(
                    "arrays must share their leading (record) length, got shapes "
                    f"{shapes}"
                )
            fields[key] = value
        self._arrays = fields
        self._length = int(length)

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        """The underlying arrays (not copied)."""
        return dict(self._arrays)

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        if isinstance(index, bool) or not isinstance(index, int | np.integer):
            raise TypeError(f"index must be an int, got {type(index).__name__}")
        i = int(index)
        if i < 0:
            i += self._length
        if not 0 <= i < self._length:
            raise IndexError(
                f"index {index} out of range for a source of length {self._length}"
            )
        return {key: value[i] for key, value in self._arrays.items()}

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{k}: {v.dtype}{list(v.shape[1:])}" for k, v in self._arrays.items()
        )
        return f"ArraySource(len={self._length}, {{{fields}}})"


def default_cache_dir() -> pathlib.Path:
    """The cache directory: ``$SEQJAX_CACHE`` if set, else ``~/.cache/seqjax``."""
    env = os.environ.get("SEQJAX_CACHE")
    if env:
        return pathlib.Path(env).expanduser()
    return pathlib.Path("~/.cache/seqjax").expanduser()


def _canonical_json(name: str, settings: Mapping[str, Any]) -> str:
    payload = {"name": name, "settings": settings, "format": FORMAT_VERSION}
    try:
        return json.dumps(
            payload, sort_keys=True, separators=(",", ":"), allow_nan=False
        )
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"settings must be JSON-serialisable (str, int, float, bool, None, lists "
            f"and dicts of them), got {settings!r}: {err}"
        ) from err


def settings_checksum(name: str, settings: Mapping[str, Any]) -> str:
    """First 16 hex digits of the sha256 of the canonical JSON of the settings.

    The canonical JSON has sorted keys and no whitespace and includes ``name`` and
    :data:`FORMAT_VERSION`, so any change to either changes the checksum.

    Args:
        name: dataset name.
        settings: JSON-serialisable generator settings.

    Returns:
        A 16-character lowercase hex string.

    Raises:
        TypeError: if ``settings`` is not JSON-serialisable.
    """
    text = _canonical_json(name, settings)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def cache_path(
    name: str,
    settings: Mapping[str, Any],
    cache_dir: str | os.PathLike[str] | None = None,
) -> pathlib.Path:
    """The file ``cached`` uses: ``cache_dir / f"{name}-{checksum}.npz"``.

    Args:
        name: dataset name: letters, digits, ``.``, ``_`` and ``-``.
        settings: JSON-serialisable generator settings.
        cache_dir: directory; ``None`` means :func:`default_cache_dir`.

    Returns:
        The path (which may not exist yet).

    Raises:
        ValueError: if ``name`` is not a safe file-name component.
        TypeError: if ``settings`` is not a mapping or not JSON-serialisable.
    """
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(
            f"name must be letters, digits, '.', '_' or '-' (starting with a letter "
            f"or digit), got {name!r}"
        )
    if not isinstance(settings, Mapping):
        raise TypeError(f"settings must be a mapping, got {type(settings)}")
    directory = default_cache_dir() if cache_dir is None else pathlib.Path(cache_dir)
    return directory / f"{name}-{settings_checksum(name, settings)}.npz"


_READ_ERRORS = (
    OSError,
    ValueError,
    EOFError,
    KeyError,
    struct.error,
    zipfile.BadZipFile,
    zlib.error,
)


def _read(path: pathlib.Path, expected_meta: str) -> dict[str, np.ndarray]:
    """Reads every array of ``path``; raises ``ValueError`` on a settings mismatch."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: np.array(data[key]) for key in data.files}
    meta = arrays.pop(_META_KEY, None)
    if meta is None or str(meta) != expected_meta:
        raise ValueError(f"{path} was written for other settings")
    return arrays


def _validate_built(name: str, arrays: Any) -> dict[str, np.ndarray]:
    if not isinstance(arrays, Mapping) or not arrays:
        raise TypeError(
            f"build() for {name!r} must return a non-empty dict of numpy arrays, got "
            f"{type(arrays)}"
        )
    out = {}
    for key, value in arrays.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise ValueError(
                f"build() for {name!r} returned key {key!r}; keys must be identifiers"
            )
        if key == _META_KEY:
            raise ValueError(f"build() for {name!r} used the reserved key {key!r}")
        value = np.asarray(value)
        if value.dtype == object:
            raise TypeError(
                f"build() for {name!r} returned an object array for {key!r}; only "
                "numeric, bool and string arrays can be cached"
            )
        out[key] = value
    return out


def _write_atomic(
    path: pathlib.Path, arrays: Mapping[str, np.ndarray], meta: str
) -> None:
    """Writes ``arrays`` to a temporary file next to ``path``, then renames it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent
    )
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez_compressed(handle, **arrays, **{_META_KEY: np.array(meta)})
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise


def cached(
    name: str,
    settings: Mapping[str, Any],
    build: Callable[[], Mapping[str, np.ndarray]],
    cache_dir: str | os.PathLike[str] | None = None,
) -> dict[str, np.ndarray]:
    """Returns ``build()``'s arrays, from the on-disk cache when a valid copy exists.

    The file is ``cache_dir / f"{name}-{checksum}.npz"`` with the checksum of
    :func:`settings_checksum`. The settings' canonical JSON is also stored inside the
    file and compared on reading, so a file is only used for exactly the settings that
    made it. A file that cannot be read (truncated, corrupt, other settings) is
    rebuilt with a warning. Writing is atomic (temporary file, ``fsync``, rename), so
    concurrent callers each write a complete file and the last rename wins.

    Args:
        name: dataset name (letters, digits, ``.``, ``_``, ``-``).
        settings: every setting that changes the generated data, JSON-serialisable.
        build: zero-argument function returning a dict of numpy arrays.
        cache_dir: directory for the file; ``None`` means :func:`default_cache_dir`
            (``$SEQJAX_CACHE`` or ``~/.cache/seqjax``).

    Returns:
        A dict of numpy arrays, equal to ``build()``.

    Raises:
        ValueError: for an unsafe ``name`` or reserved/invalid keys from ``build``.
        TypeError: if ``settings`` is not JSON-serialisable or ``build`` returns
            something other than a dict of numeric/string arrays.

    Example:
        >>> build = lambda: {"x": np.arange(3)}
        >>> arrays = cached("toy", {"n": 3}, build, "/tmp/seqjax-example")
        >>> arrays["x"].tolist()
        [0, 1, 2]
    """
    path = cache_path(name, settings, cache_dir)
    meta = _canonical_json(name, settings)
    if path.exists():
        try:
            return _read(path, meta)
        except _READ_ERRORS as err:
            warnings.warn(
                f"seqjax cache file {path} is unreadable ({type(err).__name__}: "
                f"{err}); regenerating it",
                RuntimeWarning,
                stacklevel=2,
            )
    arrays = _validate_built(name, build())
    _write_atomic(path, arrays, meta)
    return arrays
