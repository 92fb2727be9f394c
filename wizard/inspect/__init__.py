"""Pre-flight inspection of disk images for EC2 VM Import (ImportImage).

Pure Python, standard library only: it reads an image through a small random-access `Reader`
(a local file, or an S3 object through ranged GETs) and reports, in a few small reads, what
VM Import would refuse or fail on after an hour. No Django, no boto3.
"""

from __future__ import annotations

from .image import inspect_image
from .reader import FileReader, Reader, SliceReader
from .report import Finding, ImageReport, OvaDisk, OvaInfo, Partition

__all__ = [
    "FileReader",
    "Finding",
    "ImageReport",
    "OvaDisk",
    "OvaInfo",
    "Partition",
    "Reader",
    "SliceReader",
    "inspect_image",
]
