"""kerasgen: a Keras 3 zoo of generative models you train, watch in TensorBoard and serve."""
import os
import time

STARTED = time.monotonic()  # the user's clock: the run timings count from here (see trainer.Clock)

__version__ = "0.2.0"

# The repository keeps the zoo and the exporter beside this package (zoo/, export/). Installed,
# they are its subpackages kerasgen.zoo and kerasgen.export (setup.cfg's package_dir), so no
# generic top-level name such as `zoo` or `export` lands in site-packages; in a source checkout
# they are found beside it.
_checkout = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if not os.path.isdir(os.path.join(__path__[0], "zoo")) and os.path.isfile(
        os.path.join(_checkout, "zoo", "__init__.py")):
    __path__.append(_checkout)
