"""The CLI sets OpenMP's wait policy to PASSIVE before torch loads, unless the user chose one
(benchmarks/omp_contention.py: spinning OpenMP threads cost 12x the CPU per step on a busy machine)."""

import subprocess
import sys

import pytest

from ..train.conftest import subprocess_env

PROBE = ("import sys, os\n"
         "from lowerbound.cli import passive_openmp\n"
         "assert 'torch' not in sys.modules, 'importing the CLI must not load torch (and OpenMP)'\n"
         "passive_openmp()\n"
         "print(os.environ.get('OMP_WAIT_POLICY'))\n")


@pytest.mark.parametrize("user, expected", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_cli_start_sets_a_passive_wait_policy_unless_the_user_chose_one(user, expected):
    env = subprocess_env()
    env.pop("OMP_WAIT_POLICY", None)
    if user:
        env["OMP_WAIT_POLICY"] = user
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == expected
