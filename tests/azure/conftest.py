"""Fixtures for tests that drive the real azure-ai-ml SDK against the fake ARM API + Azurite.

``azure_env`` (function scope) is the entry point; see :class:`AzureEnv`. The servers are
session-scoped; each test starts from a reset fake (faults, log, durations, resources other
than the workspace and its datastore). Recorded traffic for oav goes to
``$AMLOPS_AZURE_TRAFFIC_DIR`` when set (``make contract``), else to a session temp dir.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.azure.azurite import Azurite, node_available, start_azurite
from tests.azure.fake_arm import (
    AZURITE_ACCOUNT,
    AZURITE_KEY,
    FakeArm,
    FakeCredential,
    StorageAccount,
    TestPKI,
    make_pki,
    resolve,
)
from tests.azure.fake_arm.resolve import SITECUSTOMIZE_DIR

NO_NODE = "node/npm not installed: Azurite and oav (npm packages) cannot run"
DEFAULT_DURATIONS: dict[str, float] = {}


@dataclass
class AzureEnv:
    """Everything a client of the fake cloud needs."""

    fake: FakeArm
    credential: FakeCredential
    storage: StorageAccount
    ca_bundle: Path
    env: dict[str, str] = field(default_factory=dict)  # for subprocesses (merge into os.environ)

    @property
    def subscription_id(self) -> str:
        return self.fake.subscription

    @property
    def resource_group(self) -> str:
        return self.fake.resource_group

    @property
    def workspace(self) -> str:
        return self.fake.workspace

    @property
    def cloud_name(self) -> str:
        return self.fake.cloud_name

    @property
    def cloud_metadata(self) -> dict[str, str]:
        return self.fake.cloud_metadata()

    def ml_client(self, **kwargs: Any) -> Any:
        """``azure.ai.ml.MLClient`` bound to the fake workspace."""
        from azure.ai.ml import MLClient

        kwargs.setdefault("show_progress", True)  # False swallows failed uploads (hangs)
        return MLClient(
            self.credential,
            self.subscription_id,
            self.resource_group,
            self.workspace,
            cloud=self.cloud_name,
            cloud_metadata=self.cloud_metadata,
            **kwargs,
        )


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The contract test validates the traffic of the whole run: it goes last."""
    last = [i for i in items if i.nodeid.startswith("tests/azure/test_contract.py")]
    if last:
        items[:] = [i for i in items if i not in last] + last


@pytest.fixture(scope="session")
def azure_pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestPKI]:
    """A throw-away CA trusted by this process (REQUESTS_CA_BUNDLE / SSL_CERT_FILE) and a
    ``*.localhost`` -> 127.0.0.1 resolver hook; both undone at the end of the session."""
    pki = make_pki(tmp_path_factory.mktemp("azure-pki"))
    saved = {k: os.environ.get(k) for k in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")}
    os.environ["REQUESTS_CA_BUNDLE"] = str(pki.ca_bundle)
    os.environ["SSL_CERT_FILE"] = str(pki.ca_bundle)
    was_installed = resolve.installed()
    resolve.install()
    try:
        yield pki
    finally:
        if not was_installed:
            resolve.uninstall()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def azurite(azure_pki: TestPKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    if not node_available():
        pytest.skip(NO_NODE)
    server = start_azurite(
        tmp_path_factory.mktemp("azurite"), azure_pki.server_cert, azure_pki.server_key
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def traffic_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("AMLOPS_AZURE_TRAFFIC_DIR")
    if configured:
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.mktemp("azure-traffic")


@pytest.fixture(scope="session")
def fake_arm_session(azure_pki: TestPKI, azurite: Azurite, traffic_dir: Path) -> Iterator[FakeArm]:
    storage = StorageAccount(AZURITE_ACCOUNT, AZURITE_KEY, azurite.suffix, azure_pki.ca_bundle)
    fake = FakeArm(azure_pki, storage=storage, traffic_dir=traffic_dir).start()
    DEFAULT_DURATIONS.update(fake.durations)
    try:
        fake.ensure_container(fake.default_container())
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def azure_env(fake_arm_session: FakeArm, azure_pki: TestPKI) -> Iterator[AzureEnv]:
    """A reset fake cloud and what a client (in-process or a subprocess) needs to reach it."""
    fake = fake_arm_session
    fake.reset()
    fake.durations.update(DEFAULT_DURATIONS)
    assert fake.storage is not None
    pythonpath = os.pathsep.join(
        p for p in (str(SITECUSTOMIZE_DIR), os.environ.get("PYTHONPATH", "")) if p
    )
    env = {
        "REQUESTS_CA_BUNDLE": str(azure_pki.ca_bundle),
        "SSL_CERT_FILE": str(azure_pki.ca_bundle),
        "ARM_CLOUD_METADATA_URL": fake.metadata_url,
        "AZUREML_CURRENT_CLOUD": fake.cloud_name,
        "PYTHONPATH": pythonpath,
    }
    saved_cloud = os.environ.get("AZUREML_CURRENT_CLOUD")
    try:
        yield AzureEnv(fake, FakeCredential(), fake.storage, azure_pki.ca_bundle, env)
    finally:
        # MLClient(cloud=...) sets this process-wide; do not leak the fake cloud.
        if saved_cloud is None:
            os.environ.pop("AZUREML_CURRENT_CLOUD", None)
        else:
            os.environ["AZUREML_CURRENT_CLOUD"] = saved_cloud


@pytest.fixture
def fake(azure_env: AzureEnv) -> FakeArm:
    """``azure_env``'s fake cloud with a ``cpu`` compute, for the tests that run jobs."""
    azure_env.fake.jobs.add_compute("cpu")
    return azure_env.fake
