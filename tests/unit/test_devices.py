import pytest
import torch

from monosemantic.devices import resolve_device, torch_threads
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


def test_torch_threads_sets_and_restores_the_count_even_on_error():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError, match="inside"):
        with torch_threads(1):
            assert torch.get_num_threads() == 1
            raise RuntimeError("inside")
    assert torch.get_num_threads() == before
