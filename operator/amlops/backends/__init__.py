"""Backends carry out what the reconcile core decides: ``local`` (embedded), later ``azureml``."""
