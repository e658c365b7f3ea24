"""Device report on this (CPU) machine: idempotent, honest about mixed precision."""

from __future__ import annotations

import pytest

from cxrviewer.model.device import DeviceInfo, configure_device, describe


@pytest.fixture
def cpu_only():
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("checks the CPU report; a GPU is visible here")


def test_cpu_report_is_idempotent(cpu_only):
    import keras

    first = configure_device()
    second = configure_device()
    assert first == second
    assert first.kind == "CPU" and "cores" in first.name and first.gpus == ()
    assert first.mixed_precision is False and first.notes == ()
    assert keras.mixed_precision.global_policy().name == "float32"
    assert first.summary().startswith("CPU: ")


def test_mixed_precision_is_refused_on_cpu_with_a_note(cpu_only):
    import keras

    try:
        info = configure_device(mixed_precision=True)
        assert info.mixed_precision is False
        assert info.notes and "no GPU" in info.notes[0]
        assert keras.mixed_precision.global_policy().name == "float32"
    finally:
        configure_device()


def test_describe_names_versions_and_device(cpu_only):
    import keras
    import tensorflow as tf

    text = describe()
    assert f"TensorFlow {tf.__version__}" in text and f"Keras {keras.__version__}" in text
    assert "Compute device: CPU: " in text and "Precision: float32" in text


def test_summary_mentions_mixed_precision_and_gpu_count():
    info = DeviceInfo("GPU", "NVIDIA H100", True, ("NVIDIA H100", "NVIDIA H100"))
    assert info.summary() == "GPU: NVIDIA H100, 2 GPUs (mixed precision)"


def test_report_only_call_keeps_the_global_policy():
    import keras

    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        configure_device(set_policy=False)
        assert keras.mixed_precision.global_policy().name == "mixed_float16"
    finally:
        keras.mixed_precision.set_global_policy("float32")
