"""charrnn: a character-level RNN trainer in plain NumPy, faithful to min-char-rnn."""

__version__ = "0.1.0"
