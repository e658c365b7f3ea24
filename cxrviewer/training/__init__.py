"""Training: datasets, patient split + leakage check, class weights + weighted loss,
tf.data pipeline, two-phase fit, evaluation and export of model + card.

Importing this package does not import TensorFlow; the modules that need it do
(``loss``, ``pipeline``, ``fit``, ``export``), so the GUI wizard can build datasets,
splits and class-weight charts before TensorFlow has loaded.
"""
