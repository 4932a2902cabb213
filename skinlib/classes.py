"""The seven HAM10000 diagnostic categories: codes, readable names and which are malignant."""

CLASSES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
"""Class codes in label order (the alphabetical order the study and ISIC use)."""

CLASS_NAMES = {
    "akiec": "Actinic keratoses / intraepithelial carcinoma",
    "bcc": "Basal cell carcinoma",
    "bkl": "Benign keratosis-like lesions",
    "df": "Dermatofibroma",
    "mel": "Melanoma",
    "nv": "Melanocytic nevi",
    "vasc": "Vascular lesions",
}
"""Human-readable name of each class code."""

MALIGNANT = ("akiec", "bcc", "mel")
"""Classes counted as malignant (or pre-malignant) in the study's benign-vs-malignant figures."""


def is_malignant(dx: str) -> bool:
    """Whether the class code ``dx`` is one of :data:`MALIGNANT`."""
    return dx in MALIGNANT
