import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("MONOSEMANTIC_QUIET", "1")
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def tiny_tok():
    from helpers.tiny import tiny_tokenizer

    return tiny_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A local HF directory holding a tiny random Llama-family model and its tokenizer."""
    from helpers.tiny import save_tiny_model_dir

    return save_tiny_model_dir(tmp_path_factory.mktemp("tiny_llama"), family="llama")
