"""Model registration through the real SDK: upload into Azurite, then the version PUT."""

from __future__ import annotations

from pathlib import Path

import pytest
from azure.storage.blob import ContainerClient

from tests.azure.conftest import AzureEnv
from tests.azure.deadline import within

pytestmark = pytest.mark.slow


def _model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"\x00\x01" * 512)
    (folder / "MLmodel").write_text("flavors: {}\n")
    return folder


def test_register_model_uploads_to_azurite_then_puts_version(
    azure_env: AzureEnv, tmp_path: Path
) -> None:
    from azure.ai.ml.entities import Model

    ml = azure_env.ml_client()
    folder = _model_dir(tmp_path)
    model = within(
        60,
        lambda: ml.models.create_or_update(
            Model(name="base", path=str(folder), type="custom_model", description="d1")
        ),
    )
    assert model.version == "1"
    assert model.description == "d1"

    log = azure_env.fake.log
    order = [r.operation_id for r in log.records]
    assert order == [
        "ModelVersions_List",  # latest version ($orderBy=createdtime desc, $top=1)
        "ModelContainers_Get",
        "Datastores_Get",
        "Datastores_ListSecrets",
        "ModelVersions_CreateOrUpdate",
    ], order
    assert log.writes == 1 and log.reads == 4

    # The bytes are in Azurite, under the path the version points at.
    stored = azure_env.fake.state.get(
        azure_env.fake.state.resource_id(azure_env.workspace, "models", "base", "versions", "1")
    )
    assert stored is not None
    uri = stored["properties"]["modelUri"]
    prefix = uri.split("/paths/", 1)[1]
    container = ContainerClient(
        azure_env.storage.blob_url,
        azure_env.fake.default_container(),
        credential={"account_name": azure_env.storage.name, "account_key": azure_env.storage.key},
        connection_verify=str(azure_env.ca_bundle),
    )
    with container:
        names = {b.name for b in container.list_blobs(name_starts_with=prefix)}
        assert {f"{prefix}/weights.bin", f"{prefix}/MLmodel"} <= names
        data = container.download_blob(f"{prefix}/weights.bin").readall()
    assert data == b"\x00\x01" * 512

    got = ml.models.get("base", version="1")
    assert got.id == model.id
    assert got.type == "custom_model"
    assert ml.models.get("base", label="latest").version == "1"


def test_second_registration_gets_next_version(azure_env: AzureEnv, tmp_path: Path) -> None:
    from azure.ai.ml.entities import Model

    ml = azure_env.ml_client()
    folder = _model_dir(tmp_path)
    first = within(60, lambda: ml.models.create_or_update(Model(name="m", path=str(folder))))
    (folder / "weights.bin").write_bytes(b"changed")
    second = within(60, lambda: ml.models.create_or_update(Model(name="m", path=str(folder))))
    assert (first.version, second.version) == ("1", "2")
    assert sorted(m.version for m in ml.models.list(name="m")) == ["1", "2"]
    assert azure_env.fake.log.count("ModelVersions_CreateOrUpdate") == 2
