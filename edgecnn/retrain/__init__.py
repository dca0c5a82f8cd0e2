"""`edgecnn retrain`: the closed loop's last step (host side; TensorFlow loads lazily).

old.py     the build or run to start from, its data, splits and build settings
labels.py  the new labels (`folder:` from `edgecnn label`), checked against the classes
data.py    held-out part, validation part, and the mix with the old training data
fit.py     fine-tuning the Keras source (and widening the head for --new-classes)
gate.py    old vs new on the old test split and the held-out labels
report.py  both side by side, per class
run.py     plan() without TensorFlow, then retrain()
"""

from edgecnn.retrain.run import RetrainOptions, plan, retrain

__all__ = ["RetrainOptions", "plan", "retrain"]
