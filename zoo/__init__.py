"""The model zoo: importing it registers every model (one module per model)."""
from kerasgen.zoo import conv, dense, diffusion, gru, transformer, vae  # noqa: F401
