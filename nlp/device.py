"""Device choice: `auto` means CUDA when a GPU is visible, else the CPU."""

import torch

from nlp.errors import NlpError

CHOICES = "auto, cpu, cuda, cuda:N or mps"


class DeviceError(NlpError, ValueError):
    """A device name torch does not know, one we do not train on, or one this machine lacks."""


def resolve_device(name: str = "auto") -> torch.device:
    """The device `name` stands for, checked before any work: a wrong name, or a GPU that is not
    there, is a `DeviceError` here rather than a torch error an hour into training."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise DeviceError(f"unknown device {name!r}: use {CHOICES}") from None
    if device.type == "cpu":
        return device
    if device.type == "mps":
        if not torch.backends.mps.is_available():
            raise DeviceError(f"device {name!r} requested but no Apple GPU (MPS) is available")
        return device
    if device.type != "cuda":
        raise DeviceError(f"device {name!r} is not supported: use {CHOICES}")
    if not torch.cuda.is_available():
        raise DeviceError(f"device {name!r} requested but no CUDA GPU is available")
    visible = torch.cuda.device_count()
    if device.index is not None and device.index >= visible:
        raise DeviceError(f"device {name!r} requested but only {visible} CUDA GPU(s) are visible")
    return device


def bf16_pays(device: torch.device) -> bool:
    """Whether bfloat16 autocast speeds training up here: CUDA GPUs with bf16, and CPUs with
    native bf16 instructions (AVX512-BF16 or AMX; measured 1.5x over fp32 on this project's
    CPU). Elsewhere bf16 is emulated and slower, so `bf16=None` settings train in fp32."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            flags = next((line for line in cpuinfo if line.startswith("flags")), "")
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))
