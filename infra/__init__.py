"""The Pulumi program that provisions the platform kinds: Workspace, ComputeCluster, RoleAssignment.

Pulumi runs ``infra/__main__.py`` (``main: infra/`` in Pulumi.yaml). Everything else here is a
plain import package named ``infra`` so tests, the offline plan and the benchmark can declare the
same components under Pulumi's mock monitor. No module here declares resources at import time.
"""
