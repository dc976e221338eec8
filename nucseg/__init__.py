"""nucseg: nucleus segmentation with a U-Net, measured against Otsu thresholding."""
from .io import NucsegError

__version__ = "0.1.0"
__all__ = ["NucsegError", "__version__"]
