"""Judging generated images with a small CNN classifier of the real data.

The classifier gives three numbers: its mean confidence on generated images
(recognisable → high), the entropy of its class histogram (mode collapse →
low), and the Fréchet distance between its features of real and generated
images (FID's recipe with a small in-project network instead of Inception).
"""
import math

import keras
import numpy as np
import tensorflow as tf

from kerasgen.image.data import shuffled_batches


def build_classifier(image_shape, num_classes, seed=0):
    """The source documents' 'CNN on MNIST', small enough to train in seconds; every initializer
    and the dropout are seeded here, so no global seed is touched."""
    def init(i):
        return keras.initializers.GlorotUniform(seed=seed + i)

    inputs = keras.Input(image_shape)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", kernel_initializer=init(0))(inputs)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", kernel_initializer=init(1))(x)
    x = keras.layers.Flatten()(keras.layers.MaxPooling2D()(x))
    features = keras.layers.Dense(64, activation="relu", name="features", kernel_initializer=init(2))(x)
    dropped = keras.layers.Dropout(0.2, seed=seed)(features)
    outputs = keras.layers.Dense(num_classes, name="logits", kernel_initializer=init(3))(dropped)
    return keras.Model(inputs, outputs)


def train_classifier(images, labels, split, epochs=20, seed=0):
    """A classifier fitted on the training part of `split` (see `split_images`); returns (model,
    its accuracy on the validation part)."""
    train, test = split
    model = build_classifier(images.shape[1:], int(labels.max()) + 1, seed)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = tf.constant(images[train]), tf.constant(labels[train])
    batch = min(64, len(train))  # 0 steps an epoch would make Keras read the endless stream forever
    batches = shuffled_batches(len(train), batch, seed).map(lambda i: (tf.gather(x, i), tf.gather(y, i)))
    model.fit(batches, epochs=epochs, steps_per_epoch=len(train) // batch, verbose=0,
              shuffle=False)  # the batches are shuffled
    accuracy = model.evaluate(images[test], labels[test], verbose=0, return_dict=True)["accuracy"]
    return model, float(accuracy)


def frechet_distance(features_a, features_b):
    """‖μa − μb‖² + Tr(Σa + Σb − 2(ΣaΣb)^½) between two feature sets (N, D).

    Tr((ΣaΣb)^½) is taken as Tr((Σa^½ Σb Σa^½)^½), a symmetric matrix whose
    eigenvalues are real, which avoids sqrtm's complex round-off.
    """
    features_a, features_b = np.float64(features_a), np.float64(features_b)
    mu_a, mu_b = features_a.mean(0), features_b.mean(0)
    cov_a = np.cov(features_a, rowvar=False)
    cov_b = np.cov(features_b, rowvar=False)
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    trace_root = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cov_b @ root_a), 0, None)).sum()
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_root)


class ImageJudge:
    """Scores image sets against the real data through one trained classifier."""

    def __init__(self, classifier, real_images):
        self.classifier = classifier
        self.num_classes = classifier.output_shape[-1]
        self._features = keras.Model(classifier.input, [classifier.get_layer("features").output,
                                                        classifier.output])
        self.real_features = self.features(real_images)[0]

    def features(self, images):
        features, logits = self._features.predict(np.asarray(images), batch_size=256, verbose=0)
        return features, logits

    def score(self, images, labels=None):
        """{'fid', 'class_entropy' (bits; log2 of classes = uniform), 'confidence'}, and with the
        classes the images were drawn for, 'label_accuracy': the share classified as those."""
        features, logits = self.features(images)
        probs = tf.nn.softmax(logits).numpy()
        histogram = np.bincount(probs.argmax(1), minlength=self.num_classes) / len(probs)
        nonzero = histogram[histogram > 0]
        scores = {"fid": frechet_distance(self.real_features, features),
                  "class_entropy": float(max(0.0, -(nonzero * np.log2(nonzero)).sum())),
                  "max_class_entropy": math.log2(self.num_classes),
                  "confidence": float(probs.max(1).mean())}
        if labels is not None:
            scores["label_accuracy"] = float(np.mean(probs.argmax(1) == np.asarray(labels)))
        return scores
