"""Bring a decoded image to 8 bits per channel without saturating it, and the smallest image skinlib classifies.

Pillow's ``convert("RGB")`` clips a 16-bit greyscale PNG (mode ``I;16``, ``I`` or ``F``) at 255, so a real
photo saved that way would read as all white. :func:`eight_bit` maps such an image linearly from the range
its pixels really span (darkest to brightest) onto 0-255 first; 8-bit modes are returned unchanged.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

WIDE_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N", "F")  # one channel, more than 8 bits
MIN_SIDE = 8  # pixels: a smaller image holds no lesion to classify (``python -m skinlib predict`` refuses it)


def eight_bit(image: Image.Image) -> Image.Image:
    """``image`` as 8 bits per channel: a wide greyscale mode is stretched from its lowest to its highest pixel
    value onto 0-255 (a flat image keeps its level relative to the 16-bit scale); other modes unchanged."""
    if image.mode not in WIDE_MODES:
        return image
    values = np.asarray(image, dtype=np.float64)
    low, high = float(values.min()), float(values.max())
    if high > low:
        scaled = (values - low) / (high - low) * 255.0
    else:
        scaled = np.full_like(values, np.clip(low / 65535.0, 0.0, 1.0) * 255.0)
    return Image.fromarray(np.rint(scaled).astype(np.uint8), mode="L")
