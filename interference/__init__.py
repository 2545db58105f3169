"""reefd.interference: the learned interference model.

Predicts how much an RT task slows down beside a BE task (and how much BE
throughput it keeps) from what the profile store knows about both, so the
scheduler can pick BE work, and placement a GPU, by a dict lookup.

- `features.py`: per call, task and pair features; quantisation (pure).
- `dataset.py`: a store's pair profiles joined with their tasks' features.
- `train.py`: the scikit-learn regressors and the model file.
- `baselines.py`: the predictors evaluation compares (and the learned one).
- `metrics.py`, `evaluate.py`, `plot.py`: held-out evaluation, table, PNG.
- `model.py`: `InterferenceModel`, the lookup table the scheduler calls.
- `errors.py`: `InterferenceError`.

`reef-profile train` and `reef-profile evaluate` (profiler/cli.py) run them.
Nothing here imports the scheduler, the backends or torch.
"""
