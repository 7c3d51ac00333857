"""Training: rolling labelled snapshots (``snapshots``), BG/NBD fitting (``bgnbd``), the procedure that chooses,
refits and backtests a model (``procedure``), the churn level of the period scored (``level``) and, for a
history too short for a backtest, the purchases' seasonal Pareto/NBD (``seasonal``), the churn curve
(``curve``), the training run (``run``), the scorecard, baselines, model card and charts (``evaluation``),
whether a new model replaces the champion (``promotion``), MLflow (``tracking``), and the MLflow model that
serves probabilities without churnguard (``_pyfunc``)."""
