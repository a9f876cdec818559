"""A stateful fake of the Azure ML ARM API (see server.py) and its helpers."""

from .certs import TestPKI, make_pki
from .clock import Clock
from .credential import FakeCredential, decode_jwt, make_jwt
from .faults import Fault, Faults, ProvisioningFailure
from .log import Record, RequestLog, TrafficRecorder
from .server import AZURITE_ACCOUNT, AZURITE_KEY, SPEC_API_VERSION, FakeArm, StorageAccount
from .state import Operation, State

__all__ = [
    "AZURITE_ACCOUNT",
    "AZURITE_KEY",
    "SPEC_API_VERSION",
    "Clock",
    "FakeArm",
    "FakeCredential",
    "Fault",
    "Faults",
    "Operation",
    "ProvisioningFailure",
    "Record",
    "RequestLog",
    "State",
    "StorageAccount",
    "TestPKI",
    "TrafficRecorder",
    "decode_jwt",
    "make_jwt",
    "make_pki",
]
