"""amlops: an Azure Machine Learning platform as code."""

API_GROUP = "amlops.io"
API_VERSION = "amlops.io/v1alpha1"

__all__ = ["API_GROUP", "API_VERSION"]
