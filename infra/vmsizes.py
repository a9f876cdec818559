"""VM size families the program knows how to provision as AmlCompute clusters.

Which sizes a team may *use* is policy (policies/rules/compute-gpu-vm-allowlist.yaml, checked by
`amlops validate`). This table answers a different question: is the size one Azure ML offers for
clusters, and what accelerator does it carry? A size outside every family is almost always a typo
(``Standard_NC24ads_A100_v5``), and Azure would only reject it minutes into ``pulumi up``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class VmFamily:
    name: str
    pattern: re.Pattern[str]
    accelerator: str | None  # None: CPU only


def _family(name: str, pattern: str, accelerator: str | None) -> VmFamily:
    return VmFamily(name, re.compile(pattern), accelerator)


VM_FAMILIES: tuple[VmFamily, ...] = (
    _family("NCasT4_v3", r"^Standard_NC(4|8|16|64)as_T4_v3$", "NVIDIA T4"),
    _family("NC_A100_v4", r"^Standard_NC(24|48|96)ads_A100_v4$", "NVIDIA A100 80GB PCIe"),
    _family("NCads_H100_v5", r"^Standard_NC(40|80)ads_H100_v5$", "NVIDIA H100 NVL"),
    _family("NCv3", r"^Standard_NC(6|12|24)s_v3$|^Standard_NC24rs_v3$", "NVIDIA V100"),
    _family("NDasrA100_v4", r"^Standard_ND96asr_v4$", "NVIDIA A100 40GB SXM"),
    _family("NDm_A100_v4", r"^Standard_ND96amsr_A100_v4$", "NVIDIA A100 80GB SXM"),
    _family("ND_H100_v5", r"^Standard_ND96isr_H100_v5$", "NVIDIA H100 SXM"),
    _family("NVadsA10_v5", r"^Standard_NV(6|12|18|36|72)ads_A10_v5$", "NVIDIA A10"),
    # CPU families for data preparation and evaluation steps that need no GPU.
    _family("DSv2", r"^Standard_DS(1|2|3|4|5|11|12|13|14|15)_v2$", None),
    _family("Dv3", r"^Standard_D(2|4|8|16|32|48|64)s?_v3$", None),
    _family("Dv5", r"^Standard_D(2|4|8|16|32|48|64|96)d?s_v5$", None),
    _family("Ev3", r"^Standard_E(2|4|8|16|20|32|48|64)s?_v3$", None),
)


def family_of(vm_size: str) -> VmFamily | None:
    return next((f for f in VM_FAMILIES if f.pattern.match(vm_size)), None)
