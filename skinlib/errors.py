"""Exceptions raised for bad input; each message names the file or field and says what to do."""


class SkinlibError(Exception):
    """Base class of skinlib's own errors."""


class DataError(SkinlibError, ValueError):
    """The dataset on disk is missing, incomplete or malformed."""


class ImageError(DataError):
    """An image file cannot be read or decoded."""


def image_too_large(path, error: Exception) -> ImageError:
    """The :class:`ImageError` for Pillow's ``DecompressionBombError`` on ``path``: the file, its pixel count,
    the limit, and what to do."""
    import re

    pixels = re.search(r"\((\d+) pixels\)", str(error))
    limit = re.search(r"limit of (\d+)", str(error))
    size = f"{int(pixels[1]):,} pixels" if pixels else "too many pixels"
    bound = f"Pillow's safety limit of {int(limit[1]):,}" if limit else "Pillow's safety limit"
    return ImageError(
        f"Image '{path}' has {size}, more than {bound} (it guards against decompression bombs); it was not "
        f"decoded. HAM10000 images are 600x450: check that this is the image you meant, and downsize it if it "
        f"is genuine (or raise PIL.Image.MAX_IMAGE_PIXELS).")
