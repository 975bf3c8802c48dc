"""kerasgen: a Keras 3 zoo of generative models you train, watch and serve."""
__version__ = "0.1.0"

import os

# TensorFlow's INFO/WARNING chatter hides our own messages; users can still set it lower.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
