"""Beyond one device: data-parallel training and parameter sharding on a `jax.sharding.Mesh`.

    import jax, jaxlayers as jl
    from jax.sharding import PartitionSpec as P
    mesh = jax.make_mesh((2, 4), ("data", "model"))
    ts, history = jl.fit(model, (params, state), (x, y), ..., mesh=mesh,
                         param_rules={"*/kernel": P(None, "model")})

    dp = jl.distributed.data_parallel(mesh, param_rules={"*/kernel": P(None, "model")})
    ts = dp.place(jl.TrainState.create(params, state, optimizer, key), optimizer)
    step = dp.jit_train_step(jl.train.make_train_step(model, loss, optimizer, jit=False),
                             ts.params, ts.state, ts.opt_state)
    for x, y in batches:
        x, y = dp.shard_batch((x, y))
        params, state, opt_state, value = step(params, state, opt_state, x, y, k)

Nothing here partitions a computation by hand: the arrays are placed with `NamedSharding`s
(the batch split along its first axis over the mesh's data axis, each param as its rule
says, everything else replicated) and `jax.jit` hands the step to XLA's SPMD partitioner
(GSPMD), which inserts the collectives. So the gradient of a mean loss over the global
batch is all-reduced, and a BatchNorm's batch mean and variance are the global batch's:
the step computes what it computes on one device, up to float32 summation order.

Multi-host (a TPU pod slice, several GPU machines): call `initialize()` first in every
process, build the mesh over `jax.devices()` (all processes' devices), and feed each
process its own part of the data (`local_data`); `shard_batch` assembles the global batch
from the processes' parts with `jax.make_array_from_process_local_data`.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
import warnings
from typing import Any

import jax
import numpy as np
import optax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from jaxlayers._paths import path_string
from jaxlayers.precision import DynamicLossScale
from jaxlayers.train import typed_key

__all__ = ["DataParallel", "data_parallel", "initialize", "local_data"]


# --------------------------------------------------------------------------- checks

def _auto(where: str, mesh) -> Mesh:
    """`mesh` with every axis of type Auto, the GSPMD partitioner's mode.

    jax.make_mesh makes Explicit axes by default (sharding in types): then every
    contraction over a model-sharded dimension needs an out_sharding= that the layers
    do not pass, so the same devices and names are used with Auto axes instead.
    """
    if not isinstance(mesh, Mesh):
        raise TypeError(f"{where}: mesh must be a jax.sharding.Mesh (e.g. jax.make_mesh((8,), "
                        f"('data',))), got {type(mesh).__name__}.")
    if all(t == AxisType.Auto for t in mesh.axis_types):
        return mesh
    return Mesh(mesh.devices, mesh.axis_names, axis_types=(AxisType.Auto,) * mesh.devices.ndim)


def _axes(entry) -> tuple[str, ...]:
    """The mesh axis names of one PartitionSpec entry (None, a name or a tuple of names)."""
    if entry is None:
        return ()
    return tuple(entry) if isinstance(entry, (tuple, list)) else (entry,)


def _check_axes(where: str, mesh: Mesh, names, what: str) -> None:
    for name in names:
        if name not in mesh.axis_names:
            raise ValueError(f"{where}: {what} names mesh axis {name!r}, but the mesh has "
                             f"axes {tuple(mesh.axis_names)} (shape {dict(mesh.shape)}); "
                             f"name one of them.")


def _spec(where: str, pattern, spec) -> PartitionSpec:
    if not isinstance(pattern, str):
        raise TypeError(f"{where}: a param rule's pattern must be a str such as "
                        f"'*/kernel', got {pattern!r}.")
    if isinstance(spec, PartitionSpec):
        return spec
    if isinstance(spec, (tuple, list)):
        return PartitionSpec(*spec)
    raise TypeError(f"{where}: the rule {pattern!r} must map to a PartitionSpec such as "
                    f"P(None, 'model'), got {spec!r}.")


# --------------------------------------------------------------------------- data parallel

@dataclasses.dataclass(frozen=True)
class DataParallel:
    """A mesh, its data axis and the param rules: where each array of a run lives.

    Made by `data_parallel(mesh, axis, param_rules=...)`, which checks them. Placement:

      batch         NamedSharding(mesh, P(axis)): axis 0 split over the data axis, so
                    each of its k devices holds N / k samples (N must be a multiple of k)
      params        the first rule whose pattern matches the leaf's path (fnmatch on
                    `jl.path_strings(params)`, "features/conv1/kernel"; "*" crosses "/");
                    P() (replicated) where none does
      opt_state     each copy of the params inside it (Adam's mu and nu, momentum) as the
                    params, found by `optax.tree_map_params`; the rest (step counts)
                    replicated
      state, key    replicated (BatchNorm's running statistics are small; a stateful
                    RNN's carry is replicated too)

    Attributes:
      mesh: the mesh, with Auto axes (GSPMD; an Explicit mesh's devices and names).
      axis: the data axis name (or a tuple of names: the batch split over their product).
      rules: ((pattern, PartitionSpec), ...), in the order given.
    """

    mesh: Mesh
    axis: Any
    rules: tuple
    where: str = dataclasses.field(default="data_parallel", repr=False, compare=False)

    @property
    def batch_sharding(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec(self.axis))

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec())

    @property
    def data_size(self) -> int:
        """How many ways the batch is split: the data axis's size (the product for a tuple)."""
        return math.prod(self.mesh.shape[a] for a in _axes(self.axis))

    # ----------------------------------------------------------------- params

    def param_specs(self, params) -> Any:
        """The PartitionSpec of every leaf of `params` (same structure), rules applied.

        Raises:
          ValueError: a rule that matches no path (or only paths an earlier rule took), a
            spec longer than the leaf's rank, or a dimension that the mesh axes it is split
            over do not divide; each names the rule, the path and the shapes.
        """
        where = self.where
        leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
        paths = [path_string(p) for p, _ in leaves]
        used = [False] * len(self.rules)
        specs = []
        for path, (_, leaf) in zip(paths, leaves):
            spec = PartitionSpec()
            for i, (pattern, rule_spec) in enumerate(self.rules):
                if fnmatch.fnmatchcase(path, pattern):
                    spec, used[i] = rule_spec, True
                    _check_fits(where, pattern, rule_spec, path, np.shape(leaf), self.mesh)
                    break
            specs.append(spec)
        for (pattern, _), hit in zip(self.rules, used):
            if not hit:
                shadowed = any(fnmatch.fnmatchcase(p, pattern) for p in paths)
                why = ("every path it matches is taken by an earlier rule" if shadowed else
                       "it matches none of the param paths")
                raise ValueError(f"{where}: param rule {pattern!r} shards nothing: {why}; the "
                                 f"paths are {', '.join(paths)} (jl.path_strings(params)).")
        return jax.tree_util.tree_unflatten(treedef, specs)

    def param_shardings(self, params) -> Any:
        """`param_specs` as NamedShardings on the mesh (same structure as `params`)."""
        return jax.tree.map(lambda s: NamedSharding(self.mesh, s), self.param_specs(params),
                            is_leaf=lambda s: isinstance(s, PartitionSpec))

    def shard_params(self, params) -> Any:
        """`params` copied onto the mesh, each leaf with its `param_shardings` entry."""
        return _put(params, self.param_shardings(params))

    def replicate(self, tree) -> Any:
        """`tree` copied whole onto every device of the mesh (P())."""
        return _put(tree, self.replicated)

    def opt_state_shardings(self, optimizer, opt_state, params) -> Any:
        """Shardings for `opt_state`: its copies of the params follow `param_shardings`.

        `optax.tree_map_params` finds those copies from `optimizer.init`'s structure
        (masked leaves of `jl.frozen` / `optax.multi_transform` included); everything
        else is replicated. Without an optimizer, or when optax cannot map its state, the
        whole state is replicated (correct, only not memory-saving), with a warning when
        rules shard some params. A loss-scaled run's pair (optimizer state,
        `jl.DynamicLossScale`) is mapped in its first part; the scale is replicated.
        """
        if (isinstance(opt_state, tuple) and len(opt_state) == 2
                and isinstance(opt_state[1], DynamicLossScale)):
            return (self.opt_state_shardings(optimizer, opt_state[0], params),
                    jax.tree.map(lambda _: self.replicated, opt_state[1]))
        shardings = self.param_shardings(params)
        if optimizer is not None:
            try:
                return optax.tree_map_params(
                    optimizer, lambda v, s: v if isinstance(v, optax.MaskedNode) else s,
                    opt_state, shardings, transform_non_params=lambda _: self.replicated,
                    is_leaf=lambda v: isinstance(v, optax.MaskedNode))
            except (TypeError, ValueError) as err:
                if self.rules:
                    warnings.warn(f"{self.where}: the optimizer state is replicated, as "
                                  f"optax.tree_map_params could not map it ({err})",
                                  stacklevel=3)
        elif self.rules:
            warnings.warn(f"{self.where}: no optimizer given, so the optimizer state is "
                          "replicated rather than sharded like the params.", stacklevel=3)
        return jax.tree.map(lambda _: self.replicated, opt_state)

    def onto_mesh(self, tree) -> Any:
        """`tree` with every leaf that is not on this mesh yet replicated onto it; a leaf
        already placed on the mesh (by `place`, sharded by the rules) is kept as it is.
        Used by `jl.evaluate` and `jl.predict`."""
        def put(leaf):
            sharding = getattr(leaf, "sharding", None)
            if isinstance(sharding, NamedSharding) and sharding.mesh == self.mesh:
                return leaf
            return _put(leaf, self.replicated)

        return jax.tree.map(put, tree)

    def place(self, train_state, optimizer=None):
        """A copy of a `jl.TrainState` on the mesh: params by the rules, opt_state like
        them (needs `optimizer`, see `opt_state_shardings`), state and key replicated;
        step and epoch unchanged. Fresh buffers: a donating step cannot delete the
        caller's arrays."""
        ts = train_state
        key = typed_key(self.where, ts.key)
        opt = _put(ts.opt_state, self.opt_state_shardings(optimizer, ts.opt_state, ts.params))
        return ts.replace(params=self.shard_params(ts.params), state=self.replicate(ts.state),
                          opt_state=opt, key=self.replicate(key))

    # ----------------------------------------------------------------- batches

    def check_batch_size(self, where: str, what: str, n: int) -> None:
        """A ValueError naming `what` unless a batch of n samples per process splits evenly."""
        processes = jax.process_count()
        if (n * processes) % self.data_size:
            each = f" per process, {n * processes} in all," if processes > 1 else ""
            raise ValueError(f"{where}: {what} {n}{each} does not split over the "
                             f"{self.data_size} devices of mesh axis {self.axis!r} (mesh "
                             f"{dict(self.mesh.shape)}); use a multiple of {self.data_size}.")

    def shard_batch(self, batch, *, replicate_uneven: bool = False) -> Any:
        """The batch as global jax.Arrays split along axis 0 over the data axis.

        batch: a pytree of host arrays with the samples on axis 0, the part this process
        holds: with one process the whole batch; with several, each process's own rows,
        and the global batch is their concatenation in process order
        (`jax.make_array_from_process_local_data`).

        replicate_uneven: a batch that does not split evenly (an evaluation's last, short
          batch) is placed whole on every device instead of raising; one process only.

        Raises:
          ValueError: a batch whose size the data axis does not divide (unless
            replicate_uneven, with one process), arrays of different sample counts.
        """
        leaves = jax.tree.leaves(batch)
        sizes = {np.shape(a)[0] if np.ndim(a) else None for a in leaves}
        if len(sizes) != 1 or None in sizes:
            raise ValueError(f"{self.where}: a batch must have the samples on axis 0 of every "
                             f"array, got shapes {jax.tree.map(np.shape, batch)}.")
        n = sizes.pop()
        if replicate_uneven and n % self.data_size and jax.process_count() == 1:
            return self.replicate(batch)
        self.check_batch_size(self.where, "batch size", n)
        sharding = self.batch_sharding
        return jax.tree.map(lambda a: jax.make_array_from_process_local_data(sharding, a),
                            batch)

    # ----------------------------------------------------------------- steps

    def jit_train_step(self, step, params, state, opt_state, *, donate: bool = False):
        """`step` jit-compiled with its inputs' and outputs' shardings pinned.

        step(params, state, opt_state, x, y, key) -> (params, state, opt_state, loss), as
        `jl.train.make_train_step(..., jit=False)` returns it; params, state, opt_state:
        placed on the mesh (`place`), their shardings are read off them. x and y are
        split over the data axis (host arrays are sharded on the way in), the key and the
        loss replicated. Pinning the outputs keeps every step's inputs as the first's,
        so the step compiles once. donate: as make_train_step's.
        """
        def shardings(tree):
            return jax.tree.map(lambda a: a.sharding, tree)

        placed = (shardings(params), shardings(state), shardings(opt_state))
        batch, rep = self.batch_sharding, self.replicated
        return jax.jit(step, in_shardings=placed + (batch, batch, rep),
                       out_shardings=placed + (rep,),
                       donate_argnums=(0, 1, 2) if donate else ())


def _put(tree, shardings):
    """Fresh buffers for `tree` with `shardings` (one Sharding for every leaf, or a tree
    of them). The copy comes first: jax 0.10's device_put(..., may_alias=False) onto a
    replicated sharding still reuses the source buffer for the source's device, and a
    donating step would then delete it. With several processes, device_put cannot place
    onto devices of other processes: see `_put_global`."""
    if isinstance(shardings, jax.sharding.Sharding):
        shardings = jax.tree.map(lambda _: shardings, tree)
    if jax.process_count() == 1:
        return jax.device_put(jax.device_put(tree, may_alias=False), shardings)
    return jax.tree.map(_put_global, tree, shardings)


def _put_global(leaf, sharding):
    """One leaf onto a sharding that spans several processes. Every process holds the
    same value (the same init, the same checkpoint): each builds its own devices' shards
    from its host copy (`jax.make_array_from_callback`). A leaf already spread over
    several processes is resharded by a compiled identity. PRNG keys go as their data."""
    if jax.dtypes.issubdtype(getattr(leaf, "dtype", np.float32), jax.dtypes.prng_key):
        data = _put_global(jax.random.key_data(leaf), sharding)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
        return jax.jit(lambda a: a, out_shardings=sharding)(leaf)
    host = np.asarray(leaf)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def _check_fits(where: str, pattern: str, spec: PartitionSpec, path: str, shape, mesh) -> None:
    if len(spec) > len(shape):
        raise ValueError(f"{where}: param rule {pattern!r} gives {spec} ({len(spec)} "
                         f"dimensions) to {path!r} of shape {tuple(shape)}.")
    for dim, entry in enumerate(spec):
        names = _axes(entry)
        ways = math.prod(mesh.shape[a] for a in names)
        if shape[dim] % ways:
            raise ValueError(f"{where}: param rule {pattern!r} splits dimension {dim} of "
                             f"{path!r} (shape {tuple(shape)}, size {shape[dim]}) over mesh "
                             f"axis {entry!r} of size {ways}, which does not divide it.")


def data_parallel(mesh: Mesh | None = None, axis="data", *, param_rules=None) -> DataParallel:
    """Checked placement rules for training on `mesh`: see `DataParallel`.

    Math: with the batch X = [X_1; ...; X_k] split over the k devices of the data axis and
    a mean loss L = (1/N) Σ_i l(x_i), each device computes the partial sums of its N/k
    samples and the partitioner all-reduces them, so ∇L, and every batch statistic (a
    BatchNorm's mean and variance), is the global batch's, as on one device.

    Args:
      mesh: a `jax.sharding.Mesh` (`jax.make_mesh((8,), ("data",))`, or `((2, 4),
        ("data", "model"))` with a model axis for the param rules). None: every device
        on one axis named `axis`.
      axis: the mesh axis the batch is split over (a tuple of names splits it over their
        product, e.g. ("replica", "data")); other axes hold replicas of the batch.
      param_rules: {pattern: PartitionSpec} sharding params by path, e.g.
        {"*/kernel": P(None, "model")} splits every kernel's output dimension over the
        model axis (Megatron's column split; XLA adds the all-gathers). Patterns are
        fnmatch patterns on `jl.path_strings(params)`; the first matching rule (in the
        dict's order) wins; unmatched params are replicated. A tuple may stand for a
        PartitionSpec.

    Raises:
      TypeError: mesh not a Mesh; a rule that is not (str, PartitionSpec).
      ValueError: an axis (the data axis or one in a rule) the mesh does not have. The
        rules' fit to the params (a rule matching nothing, a dimension not divisible) is
        checked when params are placed (`param_specs`), as the params are needed.
    """
    return _make("data_parallel", mesh, axis, param_rules)


def _make(where: str, mesh, axis, param_rules) -> DataParallel:
    """`data_parallel` with its errors naming `where` (fit's own call says "fit")."""
    if mesh is None:
        names = _axes(axis)
        if len(names) != 1:
            raise ValueError(f"{where}: without a mesh, axis must be one name, got {axis!r}.")
        mesh = jax.make_mesh((jax.device_count(),), names, axis_types=(AxisType.Auto,))
    mesh = _auto(where, mesh)
    if not _axes(axis) or not all(isinstance(a, str) for a in _axes(axis)):
        raise ValueError(f"{where}: the data axis must be a mesh axis name (or a tuple of "
                         f"names), got {axis!r}; the mesh has axes {tuple(mesh.axis_names)}.")
    _check_axes(where, mesh, _axes(axis),
                "data_axis" if where in ("fit", "evaluate", "predict") else "axis")
    if param_rules is not None and not isinstance(param_rules, (dict, list, tuple)):
        raise TypeError(f"{where}: param_rules must be a dict {{pattern: PartitionSpec}}, "
                        f"got {type(param_rules).__name__}.")
    rules = []
    for pattern, spec in dict(param_rules or {}).items():
        spec = _spec(where, pattern, spec)
        _check_axes(where, mesh, [a for e in spec for a in _axes(e)], f"param rule {pattern!r}")
        rules.append((pattern, spec))
    return DataParallel(mesh, tuple(axis) if isinstance(axis, list) else axis, tuple(rules),
                        where)


# --------------------------------------------------------------------------- multi-host

def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, **kwargs) -> tuple[int, int]:
    """Join a multi-process run: `jax.distributed.initialize`, then (process_index, count).

    Call it once per process, first, before any other JAX call (it must precede the
    backends' start). On a Cloud TPU pod slice, under SLURM or Open MPI, JAX finds the
    coordinator, the process count and this process's id itself: call `initialize()`.
    Elsewhere (several GPU machines by hand) give all three, the same coordinator_address
    ("10.0.0.1:1234", process 0's host) everywhere and process_id 0..num_processes-1.
    kwargs go to `jax.distributed.initialize` (local_device_ids=, initialization_timeout=).
    One process with several GPUs or TPU chips needs no initialize at all.
    """
    jax.distributed.initialize(coordinator_address, num_processes, process_id, **kwargs)
    return jax.process_index(), jax.process_count()


def local_data(tree, *, process_index: int | None = None, process_count: int | None = None):
    """This process's share of an in-memory data set every process holds whole.

    Rows [i * n // P, (i + 1) * n // P) of every array (axis 0), i the process index and
    P the count (default: jax.process_index(), jax.process_count()); the last n % P rows
    are dropped, so every process gets as many samples (multi-process `fit` shuffles every
    process's share with the same permutation). With one process it is the whole set.
    """
    i = jax.process_index() if process_index is None else process_index
    count = jax.process_count() if process_count is None else process_count
    n = {np.shape(a)[0] for a in jax.tree.leaves(tree)}
    if len(n) != 1:
        raise ValueError(f"local_data: the arrays must have the same number of samples, got "
                         f"{sorted(n)}.")
    share = n.pop() // count
    return jax.tree.map(lambda a: a[i * share:(i + 1) * share], tree)
