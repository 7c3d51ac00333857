"""Training: rolling labelled snapshots (``snapshots``), BG/NBD fitting (``bgnbd``), the procedure that chooses,
refits and backtests a model (``procedure``), the training run (``run``), the scorecard, baselines, model card
and charts (``evaluation``), MLflow (``tracking``), and the MLflow model that serves probabilities without
churnguard (``_pyfunc``)."""
