"""The same fit code under a MirroredStrategy with two replicas and under mixed precision.

No GPU here: two logical CPU devices stand in for two GPUs (the code path, loss scaling
across replicas and variable mirroring are the same), in a subprocess because logical
devices must be configured before TensorFlow starts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]

_SCRIPT = textwrap.dedent('''
    import json, sys, tempfile
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from cxrviewer.model.build import build_classifier
    from cxrviewer.training.fit import FitConfig, fit
    from cxrviewer.training.loss import WeightedBinaryCrossentropy

    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 32, 32, 3)).astype("float32")
    y = (x[:, :16, :, 0].mean(axis=(1, 2)) > 0).astype("float32")[:, None]
    y = np.concatenate([y, 1 - y], axis=1)
    y[::4, 1] = np.nan  # masked labels take part too
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    loss = WeightedBinaryCrossentropy([0.5, 0.5], [0.5, 0.5])
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    result = fit(lambda: build_classifier(2, backbone="tiny", input_size=32), ds, 64, ds, loss,
                 ["a", "b"], "multilabel", FitConfig(batch_size=16, head_epochs=0, finetune_epochs=4,
                 finetune_lr=1e-2, patience=10), tempfile.mkdtemp(), strategy=strategy)
    print("RESULT " + json.dumps({"replicas": result.replicas, "loss": [h["loss"] for h in result.history]}))
''')


def test_fit_runs_unchanged_under_a_two_replica_mirrored_strategy():
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-c", _SCRIPT], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and line, proc.stderr[-3000:]
    result = json.loads(line[0][7:])
    assert result["replicas"] == 2
    losses = result["loss"]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]


def test_mixed_precision_training_step_and_float32_export(tmp_path):
    import keras

    from cxrviewer.model.build import build_classifier
    from cxrviewer.training.export import inference_copy
    from cxrviewer.training.loss import WeightedBinaryCrossentropy
    from tests.model_helpers import tiny_card

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = build_classifier(2, backbone="tiny", input_size=32)
        assert model.get_layer("tiny_conv1").compute_dtype == "float16"
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=WeightedBinaryCrossentropy([0.5, 0.5], [0.5, 0.5]))
        x = np.random.default_rng(0).standard_normal((8, 32, 32, 3)).astype("float32")
        y = np.array([[1, 0], [0, np.nan]] * 4, dtype="float32")
        logs = model.train_on_batch(x, y, return_dict=True)
        assert np.isfinite(logs["loss"])
        clean = inference_copy(model, tiny_card(["a", "b"], size=32))
    finally:
        keras.config.set_dtype_policy(previous)
    assert all(layer.compute_dtype == "float32" for layer in clean.layers if hasattr(layer, "compute_dtype"))
    np.testing.assert_allclose(np.asarray(clean(x)), np.asarray(model(x)), atol=5e-3)
