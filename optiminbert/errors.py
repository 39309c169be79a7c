"""The exception type for bad input; the command line shows it (and the file system's OSErrors) as one line."""


class UserError(Exception):
    """A problem with the user's input (a file, a row, a param): shown as one line, exit 1."""
