"""The Kopf operator: ``kopf run -m amlops.handlers`` (or ``amlops operator``).

Importing the package registers every handler: the settings/startup hook and one module per
kind (Model, Pipeline, Endpoint). Each handler is a few lines over ``amlops.handlers.flow``,
which drives the same reconcile core and backend ``amlops up`` uses.
"""

from amlops.handlers import endpoint, model, pipeline, settings

__all__ = ["endpoint", "model", "pipeline", "settings"]
