"""Which subscription, resource group and workspace a workspace name means - pure."""

from __future__ import annotations

import json

import pytest

from amlops.backends.azureml.calls import Scrubber
from amlops.backends.azureml.settings import AzureSettings, Locator, SettingsError
from amlops.backends.base import BackendError
from amlops.core.config import DefaultWorkspace
from amlops.core.manifests import load_tree

WORKSPACE = """\
apiVersion: amlops.io/v1alpha1
kind: Workspace
metadata:
  name: ml-dev
spec:
  environment: dev
  location: westeurope
  resourceGroup: rg-from-manifest
"""


def _locator(env: dict[str, str], config: DefaultWorkspace | None = None) -> Locator:
    locator = Locator(AzureSettings.from_env(env), config)
    loaded = load_tree(["ws.yaml"], {"ws.yaml": WORKSPACE}, root=".")
    locator.learn(loaded.manifests)
    return locator


def test_settings_win_over_the_repository_config_over_the_manifest() -> None:
    config = DefaultWorkspace("ml-dev", subscription="sub-config", resource_group="rg-config")
    assert _locator({}, config).coordinates("ml-dev") == _coords("sub-config", "rg-config")
    only_sub = _locator({"AMLOPS_AZURE_SUBSCRIPTION_ID": "sub-env"})
    assert only_sub.coordinates("ml-dev") == _coords("sub-env", "rg-from-manifest")
    env = {"AMLOPS_AZURE_SUBSCRIPTION_ID": "sub-env", "AMLOPS_AZURE_RESOURCE_GROUP": "rg-env"}
    assert _locator(env, config).coordinates("ml-dev") == _coords("sub-env", "rg-env")
    mapped = {
        **env,
        "AMLOPS_AZURE_WORKSPACES": json.dumps(
            {"ml-dev": {"name": "azure-ws", "resourceGroup": "rg"}}
        ),
    }
    found = _locator(mapped, config).coordinates("ml-dev")
    assert (found.subscription_id, found.resource_group, found.workspace_name) == (
        "sub-env",
        "rg",
        "azure-ws",
    )


def test_missing_coordinates_and_bad_settings_say_what_to_set() -> None:
    with pytest.raises(BackendError, match="AMLOPS_AZURE_SUBSCRIPTION_ID"):
        _locator({}).coordinates("ml-dev")
    with pytest.raises(BackendError, match="resource group"):
        _locator({"AMLOPS_AZURE_SUBSCRIPTION_ID": "s"}).coordinates("elsewhere")
    with pytest.raises(SettingsError, match="AMLOPS_AZURE_WORKSPACES"):
        AzureSettings.from_env({"AMLOPS_AZURE_WORKSPACES": "{not json"})
    with pytest.raises(SettingsError, match="AMLOPS_AZURE_UPLOAD_TIMEOUT"):
        AzureSettings.from_env({"AMLOPS_AZURE_UPLOAD_TIMEOUT": "soon"})


def test_the_scrubber_removes_sas_keys_tokens_and_known_secrets() -> None:
    scrub = Scrubber()
    scrub.remember("k3y-of-the-endpoint-123")
    text = scrub(
        "PUT https://a.blob.core.windows.net/c/x?sv=2024&sig=abc%2Fdef&se=2030 failed;\n"
        "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=c2VjcmV0==;"
        ' "primaryKey": "pk-value", Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln'
        " key k3y-of-the-endpoint-123 \x1b[31mred\x1b[0m"
    )
    for secret in ("sig=", "abc%2F", "c2VjcmV0", "pk-value", "eyJhbGci", "k3y-of", "\x1b", "\n"):
        assert secret not in text, text
    assert "https://a.blob.core.windows.net/c/x" in text and "red" in text


def _coords(subscription: str, group: str) -> object:
    from amlops.backends.azureml.settings import Coordinates

    return Coordinates(subscription, group, "ml-dev")
