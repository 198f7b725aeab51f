"""Errors that are the user's to fix: the entry point prints their message alone, without a traceback."""


class UserError(ValueError):
    """Bad input (config value, path, dataset line, ...): the message names it and says what to do."""
