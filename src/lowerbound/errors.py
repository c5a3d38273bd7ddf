"""Errors a user can cause.  The CLI prints their message as one sentence and exits with status 2.

A leaf module: every room may import it, it imports nothing of ours.
"""


class UserError(ValueError):
    """Bad input from a user: a wrong argument, a missing or broken file, an unknown name.

    The message is one complete sentence that names the thing and what is wrong with it.
    """
