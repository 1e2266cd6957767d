"""Models on ``Backbone``: a language model, a sequence classifier, a dual encoder.

* ``LanguageModel``: embedding → blocks → norm → head (tied to the embedding or not),
  with recurrent ``step`` and ``generate`` (temperature / top-k sampling, greedy at
  temperature 0), O(1) memory per generated token.
* ``SequenceEncoder``: embedding or linear input encoder → blocks → norm → pooling
  (mean or last, masked by the true lengths of padded sequences) → ``[batch,
  features]``.
* ``SequenceClassifier``: ``SequenceEncoder`` → linear head.
* ``DualEncoder``: the Long Range Arena retrieval model: two sequences encoded by one
  shared ``SequenceEncoder``, combined as ``[u, v, u ⊙ v, u − v]`` → MLP → classes.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from seqjax.nn import block as block_lib
from seqjax.nn import norms

POOLINGS = ("mean", "last")


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")
    return value


def _check_tokens(owner: str, tokens: Any, ndim: int = 2) -> jax.Array:
    tokens = jnp.asarray(tokens)
    if tokens.ndim != ndim:
        shape = "[batch, time]" if ndim == 2 else "[batch]"
        raise ValueError(f"{owner}: tokens must be {shape}, got shape {tokens.shape}.")
    if not jnp.issubdtype(tokens.dtype, jnp.integer):
        raise TypeError(f"{owner}: tokens must be integers, got {tokens.dtype}.")
    return tokens


def _embedding_init(features: int):
    return jax.nn.initializers.normal(stddev=features**-0.5)


# --- language model -----------------------------------------------------------------


class LanguageModel(nnx.Module):
    """A causal language model: embedding → ``Backbone`` → norm → vocabulary head.

    .. math:: p(x_{t+1} \\mid x_{\\le t}) = \\mathrm{softmax}\\big(W\\,
        \\mathrm{norm}(\\mathrm{blocks}(E[x])_t)\\big)

    With ``tie_embeddings`` the head is the transposed embedding, ``W = E^T``.
    Embeddings are initialised ``N(0, 1/features)`` so that tied logits start at
    unit scale.

    Args:
      vocab_size: number of tokens.
      features: model width.
      depth: number of blocks.
      mixer: mixer name, factory, or one per block (see ``Backbone``).
      mixer_options: the mixer's keyword options.
      norm: block and final norm: ``"rmsnorm"`` (default), ``"layernorm"``,
        ``"batchnorm"`` or ``"none"``.
      tie_embeddings: share the embedding with the head.
      dtype: compute dtype; logits are returned in float32.
      param_dtype: parameter dtype.
      rngs: random streams.
      **block_options: ``mlp``, ``mlp_options``, ``conv_width``, ``dropout`` (see
        ``Block``); ``bidirectional`` is refused (a language model is causal).

    Raises:
      ValueError: bad sizes, or ``bidirectional`` given.

    Example:
      >>> from flax import nnx
      >>> lm = LanguageModel(32, 16, 2, "lru", mixer_options={"state_size": 8},
      ...                    rngs=nnx.Rngs(0))
      >>> lm(jnp.zeros((2, 5), jnp.int32)).shape
      (2, 5, 32)
      >>> lm.generate(jnp.zeros((2, 3), jnp.int32), 4, rng=jax.random.key(0)).shape
      (2, 4)
    """

    def __init__(
        self,
        vocab_size: int,
        features: int,
        depth: int,
        mixer: Any = "lru",
        *,
        mixer_options: Any = None,
        norm: str | None = "rmsnorm",
        tie_embeddings: bool = True,
        dtype: Any = jnp.float32,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
        **block_options: Any,
    ):
        self.vocab_size = _positive_int("vocab_size", vocab_size)
        self.features = _positive_int("features", features)
        if block_options.get("bidirectional") is not None:
            raise ValueError("LanguageModel is causal: bidirectional must be None.")
        dt = dict(dtype=dtype, param_dtype=param_dtype)
        self.embed = nnx.Embed(
            vocab_size,
            features,
            embedding_init=_embedding_init(features),
            rngs=rngs,
            **dt,
        )
        self.backbone = block_lib.Backbone(
            features,
            depth,
            mixer,
            mixer_options=mixer_options,
            norm=norm,
            rngs=rngs,
            **dt,
            **block_options,
        )
        self.norm = norms.make_norm(norm, features, rngs=rngs, **dt)
        self.head = (
            None
            if tie_embeddings
            else nnx.Linear(features, vocab_size, use_bias=False, rngs=rngs, **dt)
        )

    def _logits(self, h: jax.Array) -> jax.Array:
        logits = self.embed.attend(h) if self.head is None else self.head(h)
        return logits.astype(jnp.float32)

    def __call__(
        self, tokens: jax.Array, *, segment_ids: jax.Array | None = None
    ) -> jax.Array:
        """Next-token logits for every position, in parallel.

        Args:
          tokens: ``[batch, time]`` ints.
          segment_ids: optional ``[batch, time]`` packed-document labels.

        Returns:
          ``[batch, time, vocab_size]`` float32 logits.

        Raises:
          ValueError, TypeError: ``tokens`` not a 2-D integer array.
        """
        tokens = _check_tokens("LanguageModel", tokens)
        h = self.backbone(self.embed(tokens), segment_ids=segment_ids)
        return self._logits(self.norm(h))

    def init_state(self, batch_size: int) -> tuple[Any, ...]:
        """The decoding state before the first token (the backbone's state)."""
        return self.backbone.init_state(batch_size)

    def step(self, state: Any, token_t: jax.Array) -> tuple[Any, jax.Array]:
        """Reads one token per row and returns the next-token logits.

        Args:
          state: from ``init_state`` or a previous ``step``.
          token_t: ``[batch]`` ints.

        Returns:
          ``(state, logits)`` with ``logits: [batch, vocab_size]`` float32.
        """
        token_t = _check_tokens("LanguageModel.step", token_t, ndim=1)
        state, h = self.backbone.step(state, self.embed(token_t))
        return state, self._logits(self.norm.step(h))

    def generate(
        self,
        prompt: jax.Array,
        max_new_tokens: int,
        *,
        rng: jax.Array,
        temperature: float = 1.0,
        top_k: int | None = None,
    ) -> jax.Array:
        """Samples a continuation of ``prompt`` token by token with recurrent state.

        The prompt is read with ``step`` inside a ``jax.lax.scan`` (the parallel
        forms do not return their final state), then each new token is sampled from
        the last logits and fed back through ``step``, again in a ``lax.scan``. Memory
        is the recurrent state plus one row of logits: O(1) per token, whatever the
        length. ``jax.jit``/``nnx.jit`` compatible with ``max_new_tokens``,
        ``temperature`` and ``top_k`` static.

        .. math:: x_{t+1} \\sim \\mathrm{softmax}(\\mathrm{top}_k(\\ell_t) / \\tau)

        Args:
          prompt: ``[batch, prompt_len]`` ints, ``prompt_len >= 1``.
          max_new_tokens: number of tokens to generate (``>= 0``).
          rng: a ``jax.random`` key; token ``i`` uses ``fold_in(rng, i)``.
          temperature: ``τ``; ``0`` means greedy (argmax), ignoring ``top_k``.
          top_k: sample among the ``k`` most likely tokens only; ``None``: all.

        Returns:
          ``[batch, max_new_tokens]`` int32, the new tokens only.

        Raises:
          ValueError: bad ``prompt``, ``max_new_tokens``, ``temperature`` or
            ``top_k``.
        """
        prompt = _check_tokens("LanguageModel.generate", prompt)
        if prompt.shape[1] < 1:
            raise ValueError("generate: prompt must hold at least one token.")
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int):
            raise ValueError(
                f"generate: max_new_tokens must be an int, got {max_new_tokens!r}."
            )
        if max_new_tokens < 0:
            raise ValueError(
                f"generate: max_new_tokens must be >= 0, got {max_new_tokens}."
            )
        if not isinstance(temperature, (int, float)) or temperature < 0:
            raise ValueError(
                "generate: temperature must be a Python number >= 0, got "
                f"{temperature!r}."
            )
        if top_k is not None and (
            isinstance(top_k, bool)
            or not isinstance(top_k, int)
            or not 1 <= top_k <= self.vocab_size
        ):
            raise ValueError(
                f"generate: top_k must be None or an int in [1, {self.vocab_size}], "
                f"got {top_k!r}."
            )
        batch = prompt.shape[0]
        if max_new_tokens == 0:
            return jnp.zeros((batch, 0), jnp.int32)

        def read(carry, token):
            state, _ = carry
            return self.step(state, token), None

        logits0 = jnp.zeros((batch, self.vocab_size), jnp.float32)
        (state, logits), _ = jax.lax.scan(
            read, (self.init_state(batch), logits0), prompt.T
        )

        def sample(logits: jax.Array, i: jax.Array) -> jax.Array:
            return _sample(logits, jax.random.fold_in(rng, i), temperature, top_k)

        def write(carry, i):
            state, logits = carry
            token = sample(logits, i)
            return self.step(state, token), token

        (_, logits), tokens = jax.lax.scan(
            write, (state, logits), jnp.arange(max_new_tokens - 1)
        )
        last = sample(logits, jnp.asarray(max_new_tokens - 1))
        return jnp.concatenate([tokens.T, last[:, None]], axis=1)


def _sample(
    logits: jax.Array, key: jax.Array, temperature: float, top_k: int | None
) -> jax.Array:
    """One token per row from ``[batch, vocab]`` logits (greedy when ``τ = 0``)."""
    if temperature == 0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    logits = logits / temperature
    if top_k is not None:
        kth = jax.lax.top_k(logits, top_k)[0][:, -1:]
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


# --- classification -----------------------------------------------------------------


def length_mask(lengths: jax.Array | None, batch: int, time: int) -> jax.Array:
    """``[batch, time]`` booleans, true at positions ``t < lengths[b]``.

    Args:
      lengths: ``[batch]`` ints in ``[1, time]``, or ``None`` (all ``time``).
      batch: batch size.
      time: padded length.

    Returns:
      The mask.

    Raises:
      ValueError, TypeError: ``lengths`` of the wrong shape or dtype, or (when
        concrete) outside ``[1, time]``.
    """
    if lengths is None:
        return jnp.ones((batch, time), bool)
    lengths = jnp.asarray(lengths)
    if lengths.shape != (batch,):
        raise ValueError(f"lengths must be [batch] = ({batch},), got {lengths.shape}.")
    if not jnp.issubdtype(lengths.dtype, jnp.integer):
        raise TypeError(f"lengths must be integers, got {lengths.dtype}.")
    if not isinstance(lengths, jax.core.Tracer):
        values = np.asarray(lengths)
        if values.size and (values.min() < 1 or values.max() > time):
            raise ValueError(
                f"lengths must lie in [1, {time}] (the padded length), got "
                f"min {values.min()}, max {values.max()}."
            )
    return jnp.arange(time)[None, :] < lengths[:, None]


def pool(h: jax.Array, mask: jax.Array, how: str) -> jax.Array:
    """Pools ``h: [batch, time, features]`` over real positions only.

    .. math:: \\text{mean: } \\frac{\\sum_t m_t h_t}{\\sum_t m_t}, \\qquad
        \\text{last: } h_{L-1},\\ L = \\sum_t m_t

    ``"last"`` assumes right padding (real tokens first).

    Args:
      h: ``[batch, time, features]``.
      mask: ``[batch, time]`` booleans, true at real positions.
      how: ``"mean"`` or ``"last"``.

    Returns:
      ``[batch, features]``.

    Raises:
      ValueError: unknown ``how``.
    """
    if how == "mean":
        weights = mask.astype(h.dtype)[..., None]
        total = jnp.sum(h * weights, axis=1)
        count = jnp.maximum(jnp.sum(weights, axis=1), 1)
        return total / count
    if how == "last":
        last = jnp.maximum(jnp.sum(mask, axis=1) - 1, 0)
        return jnp.take_along_axis(h, last[:, None, None], axis=1)[:, 0]
    raise ValueError(f"pooling must be one of {POOLINGS}, got {how!r}.")


class SequenceEncoder(nnx.Module):
    """Encodes a padded sequence to one vector: input encoder → blocks → norm → pool.

    .. math:: u = \\mathrm{pool}_{t < L}\\big(\\mathrm{norm}(\\mathrm{blocks}(
        \\mathrm{enc}(x)))_t\\big)

    The input encoder is an embedding (``vocab_size``: integer tokens ``[batch,
    time]``) or a linear map (``input_features``: ``[batch, time,
    input_features]`` floats), exactly one of them. Padding is masked everywhere:
    BatchNorm statistics, the mixers (padding is a segment of its own, see
    ``block.pad_segments``) and the pooling, so padded positions never change the
    result, which equals encoding the unpadded sequence.

    Args:
      features: model width.
      depth: number of blocks.
      mixer: mixer name, factory, or one per block.
      mixer_options: the mixer's options.
      vocab_size: embed integer tokens.
      input_features: linearly encode float features.
      pooling: ``"mean"`` or ``"last"``.
      norm: block and final norm (``"batchnorm"`` in the LRA papers).
      dtype: compute dtype; ``param_dtype``: parameter dtype.
      rngs: random streams.
      **block_options: ``mlp``, ``conv_width``, ``dropout``, ``bidirectional``...

    Raises:
      ValueError: not exactly one of ``vocab_size``/``input_features``, or bad
        ``pooling``.
    """

    def __init__(
        self,
        features: int,
        depth: int,
        mixer: Any = "lru",
        *,
        mixer_options: Any = None,
        vocab_size: int | None = None,
        input_features: int | None = None,
        pooling: str = "mean",
        norm: str | None = "rmsnorm",
        dtype: Any = jnp.float32,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
        **block_options: Any,
    ):
        if (vocab_size is None) == (input_features is None):
            raise ValueError(
                "give exactly one of vocab_size (token inputs) and input_features "
                f"(float inputs), got vocab_size={vocab_size!r}, "
                f"input_features={input_features!r}."
            )
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}.")
        self.features = _positive_int("features", features)
        self.pooling = pooling
        self.vocab_size = vocab_size
        self.input_features = input_features
        dt = dict(dtype=dtype, param_dtype=param_dtype)
        if vocab_size is not None:
            self.encoder = nnx.Embed(
                _positive_int("vocab_size", vocab_size),
                features,
                embedding_init=_embedding_init(features),
                rngs=rngs,
                **dt,
            )
        else:
            self.encoder = nnx.Linear(
                _positive_int("input_features", input_features),
                features,
                rngs=rngs,
                **dt,
            )
        self.backbone = block_lib.Backbone(
            features,
            depth,
            mixer,
            mixer_options=mixer_options,
            norm=norm,
            rngs=rngs,
            **dt,
            **block_options,
        )
        self.norm = norms.make_norm(norm, features, rngs=rngs, **dt)

    def _encode_inputs(self, x: Any) -> jax.Array:
        if self.vocab_size is not None:
            return self.encoder(_check_tokens("SequenceEncoder", x))
        x = jnp.asarray(x)
        if x.ndim != 3 or x.shape[-1] != self.input_features:
            raise ValueError(
                f"SequenceEncoder: x must be [batch, time, {self.input_features}], "
                f"got shape {x.shape}."
            )
        return self.encoder(x)

    def __call__(self, x: jax.Array, *, lengths: jax.Array | None = None) -> jax.Array:
        """Encodes and pools.

        Args:
          x: ``[batch, time]`` ints (embedding) or ``[batch, time,
            input_features]`` floats (linear encoder), right-padded.
          lengths: ``[batch]`` true lengths in ``[1, time]``; ``None``: no padding.

        Returns:
          ``[batch, features]``.

        Raises:
          ValueError, TypeError: bad shapes or dtypes.
        """
        h = self._encode_inputs(x)
        mask = length_mask(lengths, h.shape[0], h.shape[1])
        h = self.backbone(h, mask=mask)
        h = self.norm(h, mask=mask)
        return pool(h, mask, self.pooling)


class SequenceClassifier(nnx.Module):
    """Classifies padded sequences: ``SequenceEncoder`` → linear head.

    .. math:: \\mathrm{logits} = W\\,\\mathrm{pool}_{t<L}(\\mathrm{norm}(
        \\mathrm{blocks}(\\mathrm{enc}(x)))) + b

    Args:
      num_classes: number of classes.
      features: model width.
      depth: number of blocks.
      mixer: mixer name, factory, or one per block.
      rngs: random streams.
      **encoder_options: see ``SequenceEncoder`` (``vocab_size`` or
        ``input_features``, ``pooling``, ``norm``, ``mixer_options``, ``mlp``,
        ``bidirectional``, ``dropout``, ``dtype``...).

    Example:
      >>> from flax import nnx
      >>> clf = SequenceClassifier(3, 16, 1, "lru", vocab_size=10,
      ...                          mixer_options={"state_size": 8}, rngs=nnx.Rngs(0))
      >>> clf(jnp.zeros((2, 7), jnp.int32), lengths=jnp.array([7, 4])).shape
      (2, 3)

    References:
      Tay et al., "Long Range Arena: A Benchmark for Efficient Transformers" (2021).
    """

    def __init__(
        self,
        num_classes: int,
        features: int,
        depth: int,
        mixer: Any = "lru",
        *,
        rngs: nnx.Rngs,
        **encoder_options: Any,
    ):
        self.num_classes = _positive_int("num_classes", num_classes)
        self.encoder = SequenceEncoder(
            features, depth, mixer, rngs=rngs, **encoder_options
        )
        self.head = nnx.Linear(
            features,
            num_classes,
            dtype=encoder_options.get("dtype", jnp.float32),
            param_dtype=encoder_options.get("param_dtype", jnp.float32),
            rngs=rngs,
        )

    def __call__(self, x: jax.Array, *, lengths: jax.Array | None = None) -> jax.Array:
        """``[batch, num_classes]`` float32 logits (see ``SequenceEncoder``)."""
        return self.head(self.encoder(x, lengths=lengths)).astype(jnp.float32)


class DualEncoder(nnx.Module):
    """The LRA retrieval model: one shared tower encodes both documents.

    .. math:: u = \\mathrm{enc}(x_1),\\ v = \\mathrm{enc}(x_2),\\quad
        \\mathrm{logits} = \\mathrm{MLP}([u;\\ v;\\ u \\odot v;\\ u - v])

    The combination is LRA's ("NLI" interaction): the four vectors are concatenated
    and passed through ``Dense(mlp_features) → ReLU → Dense(mlp_features // 2) →
    ReLU → Dense(num_classes)``. Both documents go through the tower as one batch
    (the shorter padded to the longer; padding is masked), so BatchNorm sees the
    same statistics for both.

    Args:
      features: model width.
      depth: number of blocks.
      mixer: mixer name, factory, or one per block.
      num_classes: 2 for LRA retrieval (match / no match).
      mlp_features: hidden width of the head's first layer; default ``features``.
      rngs: random streams.
      **encoder_options: see ``SequenceEncoder`` (``vocab_size`` for LRA's byte
        tokens, ``pooling``, ``norm``, ``bidirectional``...).

    Example:
      >>> from flax import nnx
      >>> model = DualEncoder(16, 1, "lru", vocab_size=10,
      ...                     mixer_options={"state_size": 8}, rngs=nnx.Rngs(0))
      >>> a = jnp.zeros((2, 7), jnp.int32)
      >>> model(a, a[:, :5]).shape
      (2, 2)

    References:
      Tay et al., "Long Range Arena: A Benchmark for Efficient Transformers" (2021),
      task "Byte-level Document Retrieval".
    """

    def __init__(
        self,
        features: int,
        depth: int,
        mixer: Any = "lru",
        *,
        num_classes: int = 2,
        mlp_features: int | None = None,
        rngs: nnx.Rngs,
        **encoder_options: Any,
    ):
        self.num_classes = _positive_int("num_classes", num_classes)
        hidden = _positive_int(
            "mlp_features", features if mlp_features is None else mlp_features
        )
        if hidden < 2:
            raise ValueError(f"mlp_features must be at least 2, got {hidden}.")
        self.encoder = SequenceEncoder(
            features, depth, mixer, rngs=rngs, **encoder_options
        )
        dt = dict(
            dtype=encoder_options.get("dtype", jnp.float32),
            param_dtype=encoder_options.get("param_dtype", jnp.float32),
        )
        self.mlp1 = nnx.Linear(4 * features, hidden, rngs=rngs, **dt)
        self.mlp2 = nnx.Linear(hidden, hidden // 2, rngs=rngs, **dt)
        self.logits = nnx.Linear(hidden // 2, num_classes, rngs=rngs, **dt)

    @staticmethod
    def interaction(u: jax.Array, v: jax.Array) -> jax.Array:
        """LRA's pair features ``[u, v, u ⊙ v, u − v]`` (``[batch, 4 features]``)."""
        return jnp.concatenate([u, v, u * v, u - v], axis=-1)

    def encode(
        self,
        x1: jax.Array,
        x2: jax.Array,
        *,
        lengths1: jax.Array | None = None,
        lengths2: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array]:
        """``(u, v)``: both documents through the shared tower, in one batch.

        Args:
          x1, x2: ``[batch, time_i]`` tokens (or ``[batch, time_i, input_features]``).
          lengths1, lengths2: ``[batch]`` true lengths; ``None``: ``time_i``.

        Returns:
          ``u, v``, each ``[batch, features]``.

        Raises:
          ValueError: the two batches differ in size.
        """
        x1, x2 = jnp.asarray(x1), jnp.asarray(x2)
        if x1.ndim < 2 or x2.ndim < 2 or x1.shape[0] != x2.shape[0]:
            raise ValueError(
                "DualEncoder: x1 and x2 must be batches of the same size, got shapes "
                f"{x1.shape} and {x2.shape}."
            )
        batch = x1.shape[0]
        times = (x1.shape[1], x2.shape[1])
        time = max(times)
        lengths = []
        for t, given in ((times[0], lengths1), (times[1], lengths2)):
            if given is None:
                given = jnp.full((batch,), t, jnp.int32)
            length_mask(given, batch, t)  # validates lengths against its own time
            lengths.append(jnp.asarray(given))
        padded = [_pad_time(x, time) for x in (x1, x2)]
        pooled = self.encoder(
            jnp.concatenate(padded, axis=0), lengths=jnp.concatenate(lengths)
        )
        return pooled[:batch], pooled[batch:]

    def __call__(
        self,
        x1: jax.Array,
        x2: jax.Array,
        *,
        lengths1: jax.Array | None = None,
        lengths2: jax.Array | None = None,
    ) -> jax.Array:
        """``[batch, num_classes]`` float32 logits for the pair ``(x1, x2)``."""
        u, v = self.encode(x1, x2, lengths1=lengths1, lengths2=lengths2)
        h = jax.nn.relu(self.mlp1(self.interaction(u, v)))
        h = jax.nn.relu(self.mlp2(h))
        return self.logits(h).astype(jnp.float32)


def _pad_time(x: jax.Array, time: int) -> jax.Array:
    """Right-pads axis 1 of ``x`` with zeros to ``time``."""
    widths = [(0, 0)] * x.ndim
    widths[1] = (0, time - x.shape[1])
    return jnp.pad(x, widths)
