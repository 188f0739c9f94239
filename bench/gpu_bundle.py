"""Wheels for a GPU lease: what `python -m bench.gpu --full-size` needs beyond a lent GPU machine's own packages.

    .venv/bin/python -m bench.gpu_bundle [--out .gpu/whl] [--list]
    .venv/bin/python -m bench.gpu_bundle --peer [--out .gpu/peer] [--shared .gpu/whl] [--list]

A lent GPU machine (an H200 here, `bench/gpu_lease.sh` runs there) has Python 3.12 with PyTorch and a long list of
packages, but no network: whatever else the engines import must travel with the working tree, as wheels, in the
64 MiB the tree may weigh. This finds that list from what the benchmark really imports — it runs `bench.gpu
--smoke` in a child process (both engines load, speak and decode on the CPU) and reads which distributions its
modules came from — keeps the ones the machine's image lacks, plus the few whose version the engines pin
(`PINNED_OVER_IMAGE`: the image's transformers 5 is not the 4.57.3 qwen-tts and Fish Speech are built for), and
downloads each at the version this environment runs, for CPython 3.12 on x86-64 Linux. A distribution published
only as source (antlr4's runtime, say) is built into a wheel here: they are pure Python.

`--peer`: the maintained package LockN is compared with (`bench.peer_qwen`: faster-qwen3-tts), which runs on
transformers 5 and its own build of `qwen_tts`, so it gets a site directory of its own on the machine. Its list is
`PEER_PINS` (found by loading LockN's checkpoint with it), written to `.gpu/peer/requirements.txt`; a pin whose
wheel LockN's bundle (`--shared`) already carries is not downloaded twice: the lease installs from both folders.

`--list` prints the list and downloads nothing (what `tests/test_gpu_bundle.py` checks).
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

#: Distributions the GPU machine's image holds (the device tool's KINDS.md, read 2026-11-17), normalised names.
IMAGE = frozenset("""
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core cuda-pathfinder
cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools
formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna
imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver
lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe
matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals
networkx ninja numba numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime
nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13
nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript
opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy
peft pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments
pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist python-dateutil
pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image scikit-learn scipy
seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six sortedcontainers statsmodels sympy
tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz torch
torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope triton typer
typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp
""".split())
#: In the image, but at a version the engines do not run on: LockN's pins travel and go ahead of it on the path.
PINNED_OVER_IMAGE = frozenset({"transformers", "tokenizers", "huggingface-hub", "accelerate"})
#: faster-qwen3-tts and what importing it, loading a checkpoint and speaking need beyond the image, pinned: its own
#: transformers (>= 5.15.1) with the hub, tokenizers, safetensors and regex versions that transformers checks when
#: imported (the image's minor release is unknown), qwen-tts-hf (the `qwen_tts` package for transformers 5), and
#: the audio packages `qwen_tts` imports at module level that the image lacks (librosa and its helpers, soundfile
#: with cffi, sox: a wrapper that only warns when the SoX binary is missing).
PEER_PINS = {
    "faster-qwen3-tts": "0.5.4", "qwen-tts-hf": "0.1.1.post1", "transformers": "5.15.1",
    "huggingface-hub": "1.33.0", "tokenizers": "0.22.2", "safetensors": "0.8.0", "regex": "2026.11.19",
    "accelerate": "1.12.0", "sox": "1.5.0", "librosa": "0.11.0", "soundfile": "0.14.0", "cffi": "2.1.1",
    "soxr": "1.1.0", "audioread": "3.1.0", "decorator": "5.3.1", "pooch": "1.9.0", "platformdirs": "4.14.8",
}
#: The GPU machine's interpreter and platform (pip matches manylinux tags exactly, so several are named).
TARGET = ["--python-version", "3.12", "--implementation", "cp", "--abi", "cp312", "--abi", "abi3", "--abi", "none",
          *[arg for tag in ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
                            "manylinux2014_x86_64", "manylinux1_x86_64", "any")
            for arg in ("--platform", tag)]]

#: Run in the child: the smoke bench, then which distribution each loaded module came from.
_PROBE = """
import json, runpy, sys, importlib.metadata as md
sys.argv = ["bench.gpu", "--smoke"]
runpy.run_module("bench.gpu", run_name="__main__")
owners = md.packages_distributions()
names = sorted({d for m in list(sys.modules) for d in owners.get(m.split(".")[0], [])})
print("LOCKN-DISTRIBUTIONS " + json.dumps(names))
"""


def normalise(name: str) -> str:
    """PyPI's normalised project name (PEP 503): what the image list and pip compare."""
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_distributions() -> list[str]:
    """Every distribution whose modules `bench.gpu --smoke` loads (both engines, loaded and speaking)."""
    done = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=900, check=False)
    marker = [line for line in done.stdout.splitlines() if line.startswith("LOCKN-DISTRIBUTIONS ")]
    if done.returncode != 0 or not marker:
        raise RuntimeError(f"bench.gpu --smoke failed (exit {done.returncode}): {done.stderr[-2000:]}")
    return json.loads(marker[0].split(" ", 1)[1])


def wheels_needed(distributions: list[str]) -> dict[str, str]:
    """{name: version} to carry: what the image lacks or runs at another version than the engines need."""
    needed = {}
    for name in distributions:
        key = normalise(name)
        if key in IMAGE and key not in PINNED_OVER_IMAGE:
            continue
        needed[key] = metadata.version(name)
    return dict(sorted(needed.items()))


def download(needed: dict[str, str], out: Path) -> None:
    """Each pinned wheel for the GPU machine into `out`; a source-only one built here (pure Python)."""
    out.mkdir(parents=True, exist_ok=True)
    for name, version in needed.items():
        pin = f"{name}=={version}"
        fetched = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                                  *TARGET, "-d", str(out), pin], capture_output=True, text=True, check=False)
        if fetched.returncode == 0:
            continue
        with tempfile.TemporaryDirectory() as build:
            subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", build, pin], check=True)
            for wheel in Path(build).glob("*.whl"):
                if not wheel.name.endswith("-none-any.whl"):
                    raise RuntimeError(f"{pin} has no wheel for the GPU machine and is not pure Python")
                wheel.rename(out / wheel.name)


def carried(folder: Path) -> set[tuple[str, str]]:
    """(normalised name, version) of each wheel in `folder` (a wheel's file name starts with both)."""
    return {(normalise(wheel.name.split("-")[0]), wheel.name.split("-")[1]) for wheel in folder.glob("*.whl")}


def peer_bundle(out: Path, shared: Path, pins: dict[str, str] = PEER_PINS) -> dict[str, str]:
    """Write `out`/requirements.txt (every pin) and return the pins `shared` does not already carry (to download
    into `out`): the lease installs the requirements from both folders into the peer's own site directory."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "requirements.txt").write_text("".join(f"{name}=={version}\n" for name, version in pins.items()))
    have = carried(shared)
    return {name: version for name, version in pins.items() if (normalise(name), version) not in have}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="default .gpu/whl, or .gpu/peer with --peer")
    parser.add_argument("--peer", action="store_true", help="the peer package's wheels (bench.peer_qwen)")
    parser.add_argument("--shared", type=Path, default=Path(".gpu/whl"),
                        help="with --peer: LockN's bundle, whose wheels are not downloaded twice")
    parser.add_argument("--list", action="store_true", help="print what would travel; download nothing")
    args = parser.parse_args()
    out = args.out or Path(".gpu/peer" if args.peer else ".gpu/whl")
    if args.peer:
        needed = dict(PEER_PINS) if args.list else peer_bundle(out, args.shared)
    else:
        needed = wheels_needed(imported_distributions())
    for name, version in needed.items():
        print(f"{name}=={version}")
    if args.list:
        return
    download(needed, out)
    size = sum(wheel.stat().st_size for wheel in out.glob("*.whl"))
    print(f"{len(list(out.glob('*.whl')))} wheels in {out}, {size / 2 ** 20:.1f} MiB")


if __name__ == "__main__":
    main()
