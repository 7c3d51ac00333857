"""Training: rolling labelled snapshots and the time split (``snapshots``), BG/NBD fitting (``bgnbd``), the training
run (``run``), the scorecard, baselines, model card and charts (``evaluation``), MLflow (``tracking``), and the
MLflow model that serves probabilities without churnguard (``_pyfunc``)."""
