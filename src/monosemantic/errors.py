"""Exceptions that signal a user mistake: the CLI prints their message, never a traceback."""


class UserError(Exception):
    """Bad input from the user (path, option, data); the message says what to change."""
