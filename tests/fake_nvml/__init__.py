"""A fake NVML for machines without an NVIDIA GPU (this one has none).

``fake_nvml.c`` is compiled with gcc into a ``libnvidia-ml.so.1`` whose
SONAME is the real library's. pynvml loads NVML with
``ctypes.CDLL("libnvidia-ml.so.1")``; the dynamic loader answers that with a
library of the same SONAME already loaded in the process (``preload``), or
finds it on ``LD_LIBRARY_PATH`` in a subprocess. Either way pynvml's own
ctypes code (structures, the two-call process protocol, error classes) runs
unchanged; only the library behind it is fake.
"""

from __future__ import annotations

import ctypes
import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

SOURCE = Path(__file__).with_name("fake_nvml.c")
LIBRARY_NAME = "libnvidia-ml.so.1"

VARIANTS = {
    "full": [],
    "no_v3": ["-DFAKE_NVML_NO_V3"],  # a driver before 510: _v2 is the newest
    "v1_only": ["-DFAKE_NVML_NO_V3", "-DFAKE_NVML_NO_V2"],  # before 470
}


def build(directory: Path, variant: str = "full") -> Path:
    """Compile the fake into ``directory/<variant>/libnvidia-ml.so.1``; the
    directory is what LD_LIBRARY_PATH should name."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise FileNotFoundError("gcc is needed to build the fake NVML (Debian package gcc)")
    target = directory / variant
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [gcc, "-shared", "-fPIC", "-O1", "-Wall", "-Werror", f"-Wl,-soname,{LIBRARY_NAME}",
         *VARIANTS[variant], "-o", str(target / LIBRARY_NAME), str(SOURCE)],
        check=True, capture_output=True, text=True,
    )
    return target


def preload(library_directory: Path) -> None:
    """Load the fake into this process so that pynvml's
    ``CDLL("libnvidia-ml.so.1")`` resolves to it (same SONAME)."""
    ctypes.CDLL(str(library_directory / LIBRARY_NAME), mode=ctypes.RTLD_GLOBAL)


@functools.lru_cache(maxsize=1)
def real_gpu_count() -> int:
    """GPUs a real NVML reports here (0 without driver or GPU), asked in a
    fresh process so that no fake is loaded."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FAKE_NVML")}
    probe = "import pynvml; pynvml.nvmlInit(); print(pynvml.nvmlDeviceGetCount())"
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=environment)
    try:
        return int(completed.stdout.strip()) if completed.returncode == 0 else 0
    except ValueError:
        return 0
