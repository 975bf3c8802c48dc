"""The model zoo: importing it registers every model."""
from zoo import conv, dense, gru, transformer, vae  # noqa: F401
