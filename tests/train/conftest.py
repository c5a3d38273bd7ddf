"""Training tests use one thread: the machine's 2 cores are shared, and tiny models run faster
(and with less contention) single-threaded.  Subprocess tests get the same through OMP_NUM_THREADS."""

import os


def subprocess_env(**extra):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1", **extra)
    env.pop("WORLD_SIZE", None)
    return env
