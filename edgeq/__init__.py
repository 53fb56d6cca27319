"""edgeq: put a Keras model on a microcontroller, and prove what runs there."""

__version__ = "0.1.0"
