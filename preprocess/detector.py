"""MTCNN as a shard task runs it: the pyramid narrowed by ``preprocess.pyramid``'s floor, the
networks run as TensorFlow graphs, the batch handed to TensorFlow once.

Three changes to mtcnn 1.0.0 (pinned in requirements.txt; tests/preprocess checks them against
the stock detector, so an upgrade that breaks them fails there):

* ``PyramidPNet`` is mtcnn's ``StagePNet`` for batches of one photo size that can drop the
  pyramid's leading levels (``skip_levels``). Raising ``min_face_size`` instead does not work:
  mtcnn's level count depends only on the photo size, so a larger ``min_face_size`` appends
  levels under PNet's 12-pixel window, and on a 178×218 photo anything above 22 px makes the
  whole batch fail as "no face" (``PyramidPNet`` leaves such levels out, so a larger
  ``min_face_size`` works too). Dropping levels keeps the others' scales exactly, so the
  proposals at those levels are the same as with the full search.
* The networks run through ``tf.function``: mtcnn calls its Keras models eagerly, layer by
  layer, and on CPU that Python overhead was about a third of the detection's CPU time for
  CelebA-size photos.
* ``detect_faces`` pads and stacks the batch in numpy, normalises it to float64, and every
  pyramid level and both later stages copy that into TensorFlow again; for a batch of one
  size the fast path stacks it once and normalises it in TensorFlow, as float32.

Same kernels on the same float32 values, so the detections are identical to the last bit
(tests/preprocess/test_detector.py). Building a detector loads the weights, so one is kept per
process and reused by every shard a local run writes.
"""
from __future__ import annotations

import functools

import numpy as np
import tensorflow as tf
from mtcnn import MTCNN
from mtcnn.stages import StageONet, StagePNet, StageRNet
from mtcnn.utils.bboxes import (
    generate_bounding_box,
    limit_bboxes,
    resize_to_square,
    smart_nms_from_bboxes,
    to_json,
    upscale_bboxes,
)
from mtcnn.utils.images import apply_scales, build_scale_pyramid

from preprocess.pyramid import levels_to_skip

PNET_WINDOW = 12   # mtcnn's min_size: PNet's window, in pixels of the scaled photo
SCALE_FACTOR = 0.709  # mtcnn's default step between pyramid levels


def pyramid(width: int, height: int, min_face_size: float, scale_factor: float = SCALE_FACTOR,
            min_size: int = PNET_WINDOW) -> np.ndarray:
    """mtcnn's scales for a photo of this size, finest first, without those that would make it
    smaller than PNet's window (stock mtcnn keeps them, and then finds nothing in the whole
    batch; with ``min_face_size`` 20 there are none, so the default search is unchanged)."""
    scales = build_scale_pyramid(width, height, min_face_size=min_face_size,
                                 scale_factor=scale_factor, min_size=min_size)
    return scales[min(width, height) * scales >= min_size]


def level_faces(width: int, height: int, min_face_size: float) -> np.ndarray:
    """The face size (pixels) each pyramid level looks for, finest first."""
    return PNET_WINDOW / pyramid(width, height, min_face_size)


class PyramidPNet(StagePNet):
    """mtcnn's PNet stage (steps 1-7 of ``StagePNet.__call__``) for a batch of one photo size,
    with the first ``skip_levels`` levels of ``pyramid`` left out."""

    def __call__(self, images_normalized, images_oshapes, min_face_size=20, min_size=12,
                 scale_factor=SCALE_FACTOR, threshold_pnet=0.6, nms_pnet1=0.5, nms_pnet2=0.7,
                 skip_levels=0, **kwargs):
        height, width = (int(v) for v in images_oshapes[0][:2])
        if any((int(h), int(w)) != (height, width) for h, w, _ in images_oshapes):
            raise ValueError("PyramidPNet takes a batch of one photo size")
        scales = pyramid(width, height, min_face_size, scale_factor, min_size)[skip_levels:]
        scaled, scales = apply_scales(images_normalized, [scales])
        batch = images_normalized.shape[0]
        results = [self._model(s) for s in scaled]
        proposals = [generate_bounding_box(r[0], r[1], threshold_pnet) for r in results]
        upscaled = [upscale_bboxes(b, np.asarray([scale] * batch))
                    for b, scale in zip(proposals, scales)]
        per_scale = [smart_nms_from_bboxes(b, threshold=nms_pnet1, method="union",
                                           initial_sort=False) for b in upscaled]
        boxes = np.concatenate(per_scale, axis=0) if per_scale else np.empty((0, 6))
        boxes = smart_nms_from_bboxes(boxes, threshold=nms_pnet2, method="union",
                                      initial_sort=True)
        return resize_to_square(boxes)


class Detector:
    """MTCNN with a narrowable pyramid. ``fast``: the networks run as TensorFlow graphs and
    the batch goes to TensorFlow once, as float32; otherwise mtcnn's own ``detect_faces``
    (eager networks, float64 numpy converted again by every level and stage)."""

    def __init__(self, fast: bool = True):
        self.fast = fast
        self.mtcnn = MTCNN(stages=[PyramidPNet, StageRNet, StageONet], device="CPU:0")
        if fast:
            for stage in self.mtcnn.stages:
                # mtcnn keeps each network in the stage's _model; reduce_retracing lets one
                # trace serve every pyramid level and every count of candidate boxes
                stage._model = tf.function(stage._model, reduce_retracing=True)

    def detect(self, images: list[np.ndarray], min_face_size: float, floor: float | None,
               threshold_onet: float) -> list[list[dict]]:
        """mtcnn's detections per photo (``images``: one size), searching only for faces of
        ``floor`` pixels and up (None: down to ``min_face_size``)."""
        height, width = images[0].shape[:2]
        options = dict(min_face_size=min_face_size, threshold_onet=threshold_onet,
                       skip_levels=levels_to_skip(level_faces(width, height, min_face_size),
                                                  floor))
        if not self.fast:
            return self.mtcnn.detect_faces(list(images), box_format="xywh", **options)
        return self._detect_same_size(images, options)

    def _detect_same_size(self, images: list[np.ndarray], options: dict) -> list[list[dict]]:
        """``MTCNN.detect_faces`` for a batch of one size: the same stages and post-processing
        (no padding to undo), with the normalised batch made once, in TensorFlow, as float32:
        exact, since (v - 127.5) / 128 is a multiple of 1/256, and mtcnn's resizing and
        cropping compute in float32 anyway."""
        shapes = np.asarray([image.shape for image in images])
        with tf.device(self.mtcnn.device):
            batch = (tf.cast(tf.convert_to_tensor(np.stack(images)), tf.float32) - 127.5) / 128
            try:
                boxes = None
                for stage in self.mtcnn.stages:
                    boxes = stage(bboxes_batch=boxes, images_normalized=batch,
                                  images_oshapes=shapes, **options)
                boxes = limit_bboxes(boxes, images_shapes=shapes, limit_landmarks=False)
            except tf.errors.InvalidArgumentError:  # mtcnn's way of saying "no face at all"
                boxes = np.empty((0, 16))
        return to_json(boxes, images_count=len(images), output_as_width_height=True,
                       input_as_width_height=False)


@functools.cache
def shared_detector(fast: bool = True) -> Detector:
    """One detector per process and mode (loading the weights takes a while)."""
    return Detector(fast)
