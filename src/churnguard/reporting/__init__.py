"""Retention KPIs and charts (``kpis``); score comparison, drift and campaign read-out (``monitoring``)."""
