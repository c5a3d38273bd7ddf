"""The CLI leaves OpenMP's wait policy to the user (benchmarks/omp_contention.py: PASSIVE, which an
earlier version set, cost the VDM 1.8x per step on an idle machine and 5x beside a busy process),
and importing it does not load torch (so a policy set by the user before the CLI starts still
applies)."""

import subprocess
import sys

import pytest

from ..train.conftest import subprocess_env

PROBE = ("import sys, os\n"
         "import lowerbound.cli\n"
         "assert 'torch' not in sys.modules, 'importing the CLI must not load torch (and OpenMP)'\n"
         "print(os.environ.get('OMP_WAIT_POLICY'))\n")


@pytest.mark.parametrize("user", [None, "PASSIVE"])
def test_cli_leaves_the_wait_policy_to_the_user(user):
    env = subprocess_env()
    env.pop("OMP_WAIT_POLICY", None)
    if user:
        env["OMP_WAIT_POLICY"] = user
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == str(user)
