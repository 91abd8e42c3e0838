"""The one exception type users see: the CLI prints its message on one line and exits 2."""


class SpatialqError(Exception):
    """A problem with the user's input (file, flag, data), explained in one line."""
