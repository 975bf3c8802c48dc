"""The model zoo: importing it registers every model."""
from zoo import gru, transformer  # noqa: F401
