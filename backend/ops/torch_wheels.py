"""`python -m backend.ops.torch_wheels`: the pip arguments that install the torch build this machine can use.

`make setup-gpu` asks it before installing the GPU layer. Where `nvidia-smi` answers, the driver's CUDA version
(its header: "CUDA Version: 12.8") picks the newest PyTorch CUDA build the driver can run (a driver runs builds
for its CUDA version and older); without a driver, the CPU build. An index given as its argument overrides the
choice (`make setup-gpu TORCH_INDEX=<url>`: a mirror, or a build this table does not know). It imports nothing
from LockN: it runs before the GPU layer is installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

#: The torch release the Fish and Qwen layers are tested with (requirements-fish.txt pins the same).
TORCH_VERSION = "2.13.0"
PYTORCH_INDEX = "https://download.pytorch.org/whl"
#: PyTorch's CUDA builds of TORCH_VERSION, newest first: (minimum driver CUDA version, wheel tag).
CUDA_BUILDS = (((13, 0), "cu130"), ((12, 8), "cu128"), ((12, 6), "cu126"))


def driver_cuda(nvidia_smi_output: str) -> tuple[int, int] | None:
    """The CUDA version the driver supports, from `nvidia-smi`'s header; None when it names none."""
    match = re.search(r"CUDA Version:\s*(\d+)\.(\d+)", nvidia_smi_output)
    return (int(match[1]), int(match[2])) if match else None


def wheel_tag(cuda: tuple[int, int] | None) -> str:
    """The newest CUDA build the driver runs, or "cpu" (no driver, or one older than every build)."""
    if cuda is None:
        return "cpu"
    return next((tag for minimum, tag in CUDA_BUILDS if cuda >= minimum), "cpu")


def probe_driver() -> str:
    """`nvidia-smi`'s output, or "" where there is no NVIDIA driver."""
    if shutil.which("nvidia-smi") is None:
        return ""
    try:
        return subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def pip_arguments(tag: str, index: str | None = None) -> list[str]:
    """What to hand `pip install`: torch from the build's index; the CPU build from the usual indexes (a local
    wheel directory or mirror keeps working), unless an index is forced."""
    if index:
        return ["--index-url", index, f"torch=={TORCH_VERSION}"]
    if tag == "cpu":
        return [f"torch=={TORCH_VERSION}"]
    return ["--index-url", f"{PYTORCH_INDEX}/{tag}", f"torch=={TORCH_VERSION}"]


def main(argv: list[str]) -> int:
    tag = wheel_tag(driver_cuda(probe_driver()))
    print(f"torch {TORCH_VERSION}: {'CPU build (no NVIDIA driver found)' if tag == 'cpu' else tag + ' build'}",
          file=sys.stderr)
    print(" ".join(pip_arguments(tag, argv[0] if argv else None)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
