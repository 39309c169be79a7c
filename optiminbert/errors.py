"""The one exception type the command line turns into a one-line message."""


class UserError(Exception):
    """A problem with the user's input (a file, a row, a param): shown as one line, exit 1."""
