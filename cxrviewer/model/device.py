"""Which device TensorFlow computes on: GPU memory growth, optional mixed precision, a report.

``configure_device`` must run before TensorFlow touches a GPU (memory growth cannot be
changed once the runtime has initialised the device), so ``load_model`` and the training
pipeline call it first. It is idempotent: a second call returns the same facts and never
fails because the runtime is already up.
"""

from __future__ import annotations

import os
import platform
import threading
from dataclasses import dataclass, field

_lock = threading.Lock()
_growth_done: set[str] = set()


@dataclass(frozen=True)
class DeviceInfo:
    """Where inference and training run, as reported to the user.

    kind: "GPU" or "CPU"; name: the device's marketing name (first GPU, or the CPU model);
    mixed_precision: whether the global Keras policy is mixed_float16 (GPU only);
    gpus: every visible GPU; notes: anything the user should know (e.g. mixed precision
    refused on CPU, memory growth not set because the runtime was already up).
    """

    kind: str
    name: str
    mixed_precision: bool = False
    gpus: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    def summary(self) -> str:
        """One line for status bars and logs, e.g. "GPU: NVIDIA H100 (mixed precision)"."""
        extra = " (mixed precision)" if self.mixed_precision else ""
        more = f", {len(self.gpus)} GPUs" if len(self.gpus) > 1 else ""
        return f"{self.kind}: {self.name}{more}{extra}"


def _cpu_name() -> str:
    name = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    name = name or platform.processor() or platform.machine() or "CPU"
    return f"{name}, {os.cpu_count() or 1} cores"


def configure_device(mixed_precision: bool = False, *, set_policy: bool = True) -> DeviceInfo:
    """Set memory growth on every GPU, pick the Keras dtype policy, report the device.

    mixed_precision=True means mixed_float16 on a GPU (tensor cores); on a CPU float16 is
    slower than float32, so it is declined and a note says so. With ``set_policy`` (training,
    building models) the global Keras policy is set to what is asked on every call (float32
    when False), so calls with the same argument are idempotent; models built afterwards
    follow it and the builders keep the output layer float32. ``load_model`` passes
    set_policy=False: a loaded model keeps the policy it was saved with (the Predictor
    makes a mixed-precision copy itself), and loading must not change what a training run
    in the same process set.
    """
    import keras
    import tensorflow as tf

    notes: list[str] = []
    with _lock:
        gpus = tf.config.list_physical_devices("GPU")
        for gpu in gpus:
            if gpu.name in _growth_done:
                continue
            try:
                if not tf.config.experimental.get_memory_growth(gpu):
                    tf.config.experimental.set_memory_growth(gpu, True)
                _growth_done.add(gpu.name)
            except (RuntimeError, ValueError):
                # The runtime was initialised before us (another library touched the GPU);
                # TensorFlow then keeps its default of reserving most of the GPU memory.
                notes.append(f"memory growth could not be set on {gpu.name} (GPU already initialised)")
        gpu_names = []
        for gpu in gpus:
            try:
                details = tf.config.experimental.get_device_details(gpu)
            except (RuntimeError, ValueError):
                details = {}
            gpu_names.append(str(details.get("device_name") or gpu.name))

        use_mixed = bool(mixed_precision and gpus)
        if mixed_precision and not gpus:
            notes.append("mixed precision requested but no GPU is visible: running float32 on the CPU")
        if set_policy:
            keras.mixed_precision.set_global_policy("mixed_float16" if use_mixed else "float32")

    if gpus:
        return DeviceInfo("GPU", gpu_names[0], use_mixed, tuple(gpu_names), tuple(notes))
    return DeviceInfo("CPU", _cpu_name(), False, (), tuple(notes))


def describe(info: DeviceInfo | None = None) -> str:
    """Several lines for ``cxrviewer info``: library versions, device, precision, notes."""
    import keras
    import tensorflow as tf

    info = info or configure_device()
    build = tf.sysconfig.get_build_info()
    cuda = build.get("cuda_version") if build.get("is_cuda_build") else None
    lines = [
        f"TensorFlow {tf.__version__} (CUDA build: {cuda or 'no'}), Keras {keras.__version__}",
        f"Compute device: {info.summary()}",
        f"Precision: {'mixed_float16' if info.mixed_precision else 'float32'}",
    ]
    if len(info.gpus) > 1:
        lines.append("GPUs: " + "; ".join(info.gpus))
    lines.extend(f"Note: {n}" for n in info.notes)
    return "\n".join(lines)
