"""Every test runs on one torch thread: the models are tiny, and on a 2-core machine a second thread
only adds contention (measured 10-50x slowdowns under load).  Subprocess tests set OMP_NUM_THREADS."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
