"""Optional speed paths that replace parts of a built model; the building blocks in `nn/` never import them.

onednn    float32 CPU matrix products on oneDNN instead of MKL: `use_onednn(model)`
"""

from .onednn import available, cpu_vendor, cpuinfo, onednn_mode, use_onednn

__all__ = ["available", "cpu_vendor", "cpuinfo", "onednn_mode", "use_onednn"]
