"""Throw-away certificate authorities for the test servers that speak TLS on loopback (the
kube-apiserver of tests/envtest, the fake Azure ML API of tests/azure): the product's own
builders (amlops.core.pki), which the operator's generated webhook certificate uses too."""

from __future__ import annotations

from amlops.core.pki import new_key, self_signed_ca, signed_leaf

__all__ = ["new_key", "self_signed_ca", "signed_leaf"]
