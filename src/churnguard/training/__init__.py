"""Training: rolling labelled snapshots (``snapshots``), the tracked training run (``run``), the scorecard and
its charts (``evaluation``), and the MLflow model that serves probabilities without churnguard (``_pyfunc``)."""
