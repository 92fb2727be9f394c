"""Fixtures for the image inspector's tests: pure Python, no Django, no database.

The corpus of real images (every format and subformat, GPT+ESP and MBR layouts) is built once
per session by make-corpus.sh (a copy of /work/shared/corpus/make-corpus.sh, kept in the
repository so that CI has it) with qemu-img and friends. Without those tools the corpus tests
are skipped, except in CI (CI=true), which installs them and must not skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("make-corpus.sh")
TOOLS = ("qemu-img", "sgdisk", "sfdisk", "mkfs.vfat", "mkfs.ext4", "mcopy", "mkfs.xfs")
VMDKSTREAM = Path("/usr/lib/python3/dist-packages/VMDKstream.py")
PACKAGES = "qemu-utils gdisk fdisk dosfstools e2fsprogs mtools python3-vmdkstream xfsprogs"


@pytest.fixture(autouse=True)
def q_sync() -> None:
    """Replaces the project-wide fixture of that name: nothing here runs django-q2."""


def tool(name: str) -> str:
    """Path of a disk tool; mkfs and partitioners live in /usr/sbin, often not on a user's PATH."""
    return shutil.which(name) or f"/usr/sbin/{name}"


def missing_tools() -> list[str]:
    missing = [t for t in TOOLS if not Path(tool(t)).exists()]
    return missing + ([str(VMDKSTREAM)] if not VMDKSTREAM.exists() else [])


def require_tools() -> None:
    missing = missing_tools()
    if not missing:
        return
    message = f"disk tools missing ({', '.join(missing)}): apt-get install {PACKAGES}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of corpus images (gpt.raw, mbr-stream.vmdk, gpt.ova, ...), built once."""
    require_tools()
    out = tmp_path_factory.mktemp("corpus")
    env = {**os.environ, "PATH": os.environ.get("PATH", "") + ":/usr/sbin:/sbin"}
    done = subprocess.run(["bash", str(SCRIPT), str(out)], capture_output=True, text=True, env=env, timeout=300)
    if done.returncode:
        pytest.fail(f"make-corpus.sh failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return out
