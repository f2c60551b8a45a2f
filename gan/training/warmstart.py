"""``train.init_from``: a new run starts from another run's networks (fine-tuning, transfer).

G, D, the encoder (aeacgan) and G's moving average are read from the source's checkpoint
(``RUN_DIR``: its newest; ``:best``: its ``checkpoint.keep_best`` snapshot; ``:ckpt-N``);
the optimizers, the counters (epoch, step), the guard and ADA's probability start afresh, as
the layer RNG states do (from the run's seed). A source without G's average, for a run that
keeps one, starts the average at G.

Only a run with no checkpoint of its own starts this way: once it has one, a requeued or
resubmitted run resumes from it like any other, bitwise, and the source is never read again.
Which checkpoint it started from is logged and kept in ``run_dir/init_from.json``.

The spec checks (``jobs/core/rundir.py``) catch a missing source or checkpoint and another
model family before anything runs; here a model whose shapes differ from the source's stops
with one line naming the variable and both shapes.
"""
from __future__ import annotations

import collections
import logging
from pathlib import Path

import tensorflow as tf
from tensorflow.core.protobuf import trackable_object_graph_pb2

from gan.parallel import distributed
from gan.training.checkpoint import SpecMismatch, read_best
from gan.training.state import TrainState
from jobs.core.files import atomic_write_json, why
from jobs.core.rundir import (
    BEST_DIR,
    CHECKPOINTS,
    FIELD,
    INIT_RECORD,
    checkpoint_problem,
    split_init_from,
)
from jobs.core.schema import TrainSpec

log = logging.getLogger(__name__)


def source_checkpoint(value: str) -> str:
    """The checkpoint ``train.init_from`` names (its path prefix); SpecMismatch if none."""
    path, which = split_init_from(value)
    run = Path(path)
    problem = checkpoint_problem(run, which) if run.is_dir() else f"{path!r} does not exist"
    if problem:
        raise SpecMismatch(f"{FIELD}: {problem}")
    if which == "best":
        return str(run / BEST_DIR / read_best(run)["checkpoint"])
    if which == "latest":
        newest = tf.train.latest_checkpoint(str(run / CHECKPOINTS))
        if newest is None:
            raise SpecMismatch(f"{FIELD}: {run / CHECKPOINTS} names a checkpoint whose files "
                               "are gone")
        return newest
    return str(run / CHECKPOINTS / which)


def object_graph(path: str) -> trackable_object_graph_pb2.TrackableObjectGraph:
    """A checkpoint's object graph: how TensorFlow matches its values to objects (a
    variable's name in the file is only the first path that reached it)."""
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(tf.train.load_checkpoint(path).get_tensor(
        "_CHECKPOINTABLE_OBJECT_GRAPH"))
    return graph


def shape_problem(path: str, wanted: dict) -> str:
    """The first variable of ``wanted`` whose shape differs from the value the checkpoint
    holds for it, walked the way a restore matches them ('' if none): TensorFlow's own
    refusal comes mid-restore, and leaves hundreds of lines of warnings behind."""
    graph = object_graph(path)
    shapes = tf.train.load_checkpoint(path).get_variable_to_shape_map()
    ids = {child.local_name: child.node_id for child in graph.nodes[0].children}
    todo = collections.deque((obj, ids[name], name) for name, obj in wanted.items())
    seen = set()
    while todo:
        obj, node_id, network = todo.popleft()
        if node_id in seen:
            continue
        seen.add(node_id)
        node = graph.nodes[node_id]
        for attr in node.attributes:
            held = shapes.get(attr.checkpoint_key)
            if attr.name == "VARIABLE_VALUE" and held is not None \
                    and list(held) != list(obj.shape):
                return (f"{network} {getattr(obj, 'path', obj.name)}: the source holds "
                        f"shape {tuple(held)}, this model {tuple(obj.shape)}")
        children = tf.train.TrackableView(obj).children(obj)
        todo.extend((children[c.local_name], c.node_id, network) for c in node.children
                    if c.local_name in children)
    return ""


def load(value: str, state: TrainState) -> dict:
    """Read the source's networks into ``state``'s; what was read from where."""
    path = source_checkpoint(value)
    held = {child.local_name for child in object_graph(path).nodes[0].children}
    wanted = {"generator": state.G, "discriminator": state.D}
    if state.E is not None:
        wanted["encoder"] = state.E
    if state.G_ema is not None and "generator_ema" in held:
        wanted["generator_ema"] = state.G_ema
    missing = [name for name in wanted if name not in held]
    if missing:
        raise SpecMismatch(f"{FIELD}: {path} holds no {' or '.join(missing)}: not a "
                           "checkpoint of this model family")
    problem = shape_problem(path, wanted)
    try:
        if not problem:
            tf.train.Checkpoint(**wanted).read(path).expect_partial() \
                .assert_existing_objects_matched()
    except (ValueError, AssertionError, tf.errors.OpError) as exc:
        problem = why(exc).splitlines()[0][:300]
    if problem:
        raise SpecMismatch(f"{FIELD}: {path} does not fit this train.model: {problem} "
                           "(image_size, latent_dim, filters and classes must be the "
                           "source's)")
    loaded = list(wanted)
    if state.G_ema is not None and "generator_ema" not in wanted:
        state.G_ema.set_weights(state.G.get_weights())  # the average starts at G
        loaded.append("generator_ema (G's copy: the source kept no average)")
    return {"init_from": value, "checkpoint": path, "networks": loaded}


def start(spec: TrainSpec, state: TrainState, world: distributed.World,
          resumed_from: str | None) -> dict | None:
    """Apply ``spec.init_from`` to a run that did not resume (every rank reads the source;
    rank 0's weights are broadcast after). What was loaded, None if nothing was."""
    if not spec.init_from:
        return None
    if resumed_from is not None:
        log.info("%s %s not read: the run resumes from its own %s", FIELD, spec.init_from,
                 Path(resumed_from).name)
        return None
    record = load(spec.init_from, state)
    log.info("%s: %s from %s; optimizers, counters and the guard start afresh", FIELD,
             ", ".join(record["networks"]), record["checkpoint"])
    if world.is_chief:
        atomic_write_json(Path(spec.run_dir) / INIT_RECORD, record)
    return record
