import pytest
import torch

from monosemantic.devices import resolve_device
from monosemantic.errors import UserError


def test_auto_picks_cpu_without_cuda():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


def test_explicit_names_pass_through():
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_a_user_error():
    with pytest.raises(UserError, match="CUDA is not available"):
        resolve_device("cuda:0")


def test_garbage_is_a_user_error():
    with pytest.raises(UserError, match="not a device name"):
        resolve_device("gpu-please")
