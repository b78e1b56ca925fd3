"""Errors a user can fix. The command line prints them as one line and exits with code 2."""


class UserError(Exception):
    """Bad input from the user (a path, a symbol, an address, a config value)."""
