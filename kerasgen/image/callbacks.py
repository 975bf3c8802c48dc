"""A callback that shows generated images in TensorBoard each epoch, and scores them."""
import keras
import numpy as np
import tensorflow as tf

from kerasgen.image.data import image_grid

SCORED_SAMPLES = 500  # per epoch: enough for a stable Fréchet distance over 64 features
JUDGED = ("fid", "class_entropy", "confidence")  # logged as val_<name>; and label_accuracy


class ImageLogger(keras.callbacks.Callback):
    """Each epoch: a fixed-seed sample grid (and reconstructions, for models that encode) in
    TensorBoard's Images tab, and the judge's scores put into `logs` as val_fid,
    val_class_entropy, val_confidence (and val_label_accuracy, for conditional models), so the TensorBoard callback plots them and
    checkpoints and early stopping can watch them (place this callback before those).
    """

    def __init__(self, log_dir, judge=None, real_images=None, num_images=64, seed=0):
        super().__init__()
        self.log_dir, self.judge, self.seed, self.num_images = log_dir, judge, seed, num_images
        self.real_images = real_images
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        from kerasgen.image import judge_samples, sample_grid

        with self._writer.as_default():
            tf.summary.image("samples", sample_grid(self.model, self.num_images, self.seed)[None],
                             step=epoch)
            if self.real_images is not None and self.model.reconstructs:
                originals = self.real_images[:32]
                pairs = np.concatenate([originals, np.asarray(self.model(originals))])
                tf.summary.image("reconstructions (top: real, bottom: decoded)",
                                 image_grid(pairs)[None], step=epoch)
        self._writer.flush()
        if self.judge is not None and logs is not None:
            scores = judge_samples(self.model, self.judge, SCORED_SAMPLES, self.seed + 1)
            logs.update({f"val_{name}": scores[name] for name in (*JUDGED, "label_accuracy")
                         if name in scores})
