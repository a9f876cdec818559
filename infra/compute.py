"""GpuCluster: one AmlCompute cluster in a workspace."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_azure_native import machinelearningservices as ml

from infra.specs import ClusterSpec


@dataclass(frozen=True)
class GpuClusterArgs:
    spec: ClusterSpec
    workspace_name: pulumi.Input[str]
    resource_group_name: pulumi.Input[str]
    location: str


class GpuCluster(pulumi.ComponentResource):
    """AmlCompute with scale settings from the manifest; SSH off, identity on."""

    compute_id: pulumi.Output[str]
    compute_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: GpuClusterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("amlops:infra:GpuCluster", name, None, opts)
        spec = args.spec
        compute = ml.Compute(
            f"{name}-compute",
            ml.ComputeArgs(
                compute_name=spec.name,
                workspace_name=args.workspace_name,
                resource_group_name=args.resource_group_name,
                location=args.location,
                # Jobs reach storage and the registry as the cluster, not with keys.
                identity=ml.ManagedServiceIdentityArgs(type="SystemAssigned"),
                # `properties` is a union of ten compute types: only the typed Args class
                # tells the SDK which one this is and gets the keys camelCased on the wire.
                properties=ml.AmlComputeArgs(
                    compute_type="AmlCompute",
                    description=spec.description,
                    disable_local_auth=True,
                    properties=ml.AmlComputePropertiesArgs(
                        vm_size=spec.vm_size,
                        vm_priority=spec.priority,
                        os_type=ml.OsType.LINUX,
                        remote_login_port_public_access=ml.RemoteLoginPortPublicAccess.DISABLED,
                        # Nodes in a managed network get no public IP; outbound goes through
                        # the workspace's managed network instead.
                        enable_node_public_ip=spec.node_public_ip,
                        scale_settings=ml.ScaleSettingsArgs(
                            min_node_count=spec.min_nodes,
                            max_node_count=spec.max_nodes,
                            node_idle_time_before_scale_down=spec.idle_before_scale_down,
                        ),
                    ),
                ),
                tags=spec.tags,
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.compute_id = compute.id
        self.compute_name = compute.name
        self.register_outputs({"computeId": self.compute_id, "computeName": self.compute_name})
