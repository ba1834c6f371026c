"""The one base class of every error a user can fix: the command line prints its message alone
(the traceback goes to the run's log file), instead of a raw traceback."""


class SptError(Exception):
    """Bad input (a config value, a file, a folder, a checkpoint); the message names it and how to fix it."""
