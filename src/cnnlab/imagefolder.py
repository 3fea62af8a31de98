"""Compatibility: image folders now live in :mod:`cnnlab.data.imagefolder`."""

from cnnlab.data.decode import decode_image
from cnnlab.data.imagefolder import DEFAULT_SIDE, IMAGE_EXTENSIONS, StreamingImages, load_image_folder

__all__ = ["DEFAULT_SIDE", "IMAGE_EXTENSIONS", "StreamingImages", "decode_image", "load_image_folder"]
