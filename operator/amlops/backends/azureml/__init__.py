"""The ``azureml`` backend: the Backend protocol on Azure ML through the official SDK.

Importing it imports ``azure.ai.ml`` lazily (on the first client), but drivers still reach it
only through ``amlops.backends.create``, so the local default never loads it.
"""

from amlops.backends.azureml.backend import AzureMLBackend as AzureMLBackend
from amlops.backends.azureml.settings import AzureSettings as AzureSettings
