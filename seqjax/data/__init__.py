"""Datasets and generators: numpy in, numpy out (no Flax, optax or orbax).

Generated tasks (seeded): ``listops``, ``pathfinder``, ``mqar``, ``parity``,
``copying``. File- and TFDS-backed: ``mnist``, ``lra_text``, ``lra_image``,
``lra_retrieval``. Language modelling: ``corpus`` (the built-in corpus, local files,
TFDS text), ``tokenizer``, ``packing``. Shared: ``sources`` (``ArraySource``, the npz
cache). TFDS is imported only when a TFDS-backed loader runs.
"""

from seqjax.data.corpus import builtin_corpus, text_files, tfds_text
from seqjax.data.packing import PackedSource, lm_dataset, pack_documents
from seqjax.data.sources import ArraySource, cached
from seqjax.data.tokenizer import ByteTokenizer, Tokenizer

__all__ = [
    "ArraySource",
    "ByteTokenizer",
    "PackedSource",
    "Tokenizer",
    "builtin_corpus",
    "cached",
    "lm_dataset",
    "pack_documents",
    "text_files",
    "tfds_text",
]
