"""Device mesh and sharding rules (what used to be ``pjit``).

The mesh has three named axes, ``("data", "fsdp", "tensor")``, with sizes from
``MeshConfig`` (``-1`` takes the devices left over). Shardings follow rules on shapes:

* a parameter (or optimizer moment) with at least ``fsdp_min_size`` elements is split
  over ``fsdp`` along its largest dimension that divides evenly, and over ``tensor``
  along another dimension (the last one that divides) when ``tensor > 1``;
* smaller arrays (biases, norm scales, diagonal recurrent weights) are replicated;
* batches are split over ``("data", "fsdp")`` along their first (batch) axis.

Axis types are ``Auto``: shardings are given to ``jax.jit``'s ``in_shardings`` and
``out_shardings`` and XLA inserts the collectives.
"""

from __future__ import annotations

import math

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from seqjax import config as config_lib

AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")


def make_mesh(cfg: config_lib.MeshConfig, devices=None) -> Mesh:
    """Builds the ``(data, fsdp, tensor)`` mesh from ``jax.devices()``.

    With sizes whose product is below the device count, the first devices are used
    (so ``data=1`` runs on one device of a bigger host).

    Raises:
      ValueError: sizes that are not positive (or -1), more than one -1, or a product
        larger than the number of devices.
    """
    devices = list(devices if devices is not None else jax.devices())
    sizes = [cfg.data, cfg.fsdp, cfg.tensor]
    named = dict(zip(AXES, sizes, strict=True))
    if any(s == 0 or s < -1 for s in sizes):
        raise ValueError(f"mesh sizes must be positive or -1, got {named}")
    if sizes.count(-1) > 1:
        raise ValueError(f"at most one mesh axis may be -1, got {named}")
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if len(devices) % known:
            raise ValueError(
                f"{len(devices)} devices do not divide into the fixed mesh axes {named}"
            )
        sizes[sizes.index(-1)] = len(devices) // known
    total = math.prod(sizes)
    named = dict(zip(AXES, sizes, strict=True))
    if total > len(devices):
        raise ValueError(
            f"mesh {named} needs {total} devices, only {len(devices)} available"
        )
    return jax.make_mesh(
        tuple(sizes), AXES, axis_types=(AxisType.Auto,) * 3, devices=devices[:total]
    )


def param_spec(shape: tuple[int, ...], mesh: Mesh, min_size: int) -> PartitionSpec:
    """The partition spec of one parameter-like array (see the module docstring)."""
    spec: list = [None] * len(shape)
    if not shape or math.prod(shape) < min_size:
        return PartitionSpec(*spec)
    fsdp, tensor = mesh.shape["fsdp"], mesh.shape["tensor"]
    if fsdp > 1:
        order = sorted(range(len(shape)), key=lambda i: -shape[i])
        for i in order:
            if shape[i] % fsdp == 0:
                spec[i] = "fsdp"
                break
    if tensor > 1:
        for i in reversed(range(len(shape))):
            if spec[i] is None and shape[i] % tensor == 0:
                spec[i] = "tensor"
                break
    return PartitionSpec(*spec)


def state_shardings(abstract_state, mesh: Mesh, min_size: int):
    """Shardings for every leaf of a (possibly abstract) state pytree."""

    def one(leaf):
        shape = tuple(getattr(leaf, "shape", ()))
        return NamedSharding(mesh, param_spec(shape, mesh, min_size))

    return jax.tree.map(one, abstract_state)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Batches are split over ``data`` x ``fsdp`` along their first axis."""
    return NamedSharding(mesh, PartitionSpec(BATCH_AXES))


def batch_divisor(mesh: Mesh) -> int:
    return int(np.prod([mesh.shape[a] for a in BATCH_AXES]))


def put_batch(batch: dict, mesh: Mesh):
    """Places this process's part of a batch onto the mesh as global arrays."""
    sharding = batch_sharding(mesh)
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch
    )
