"""Exceptions raised for bad input; each message names the file or field and says what to do."""


class SkinlibError(Exception):
    """Base class of skinlib's own errors."""


class DataError(SkinlibError, ValueError):
    """The dataset on disk is missing, incomplete or malformed."""


class ImageError(DataError):
    """An image file cannot be read or decoded."""
