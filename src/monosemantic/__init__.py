"""monosemantic: sparse dictionary learning on language-model activations, end to end."""

__version__ = "0.1.0"
