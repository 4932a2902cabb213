"""skinlib: reproduce, then correct and surpass, a classic HAM10000 skin-lesion classification study.

The seven diagnostic classes of HAM10000, in the order every array, label and probability in this
package uses::

    >>> import skinlib
    >>> skinlib.CLASSES
    ('akiec', 'bcc', 'bkl', 'df', 'mel', 'nv', 'vasc')

Submodules are imported on use: ``from skinlib import data, models, train, evaluate``.
"""

from skinlib.classes import CLASS_NAMES, CLASSES, MALIGNANT, is_malignant

__version__ = "0.1.0"

__all__ = ["CLASSES", "CLASS_NAMES", "MALIGNANT", "is_malignant", "__version__"]
