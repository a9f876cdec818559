"""GitOps: from a Git repository to the objects in the cluster, for both drivers
(``amlops apply`` and the GitSource handler). A driver-level package: it may import core, kinds,
crds and the kubernetes client; cli/ and handlers/ import it.

* ``fetch``: fetch a repository (https, http, git, ssh) into a bare mirror cache with dulwich,
  resolve a ref (branch, tag, semver range over tags, commit) to a commit and a Flux-style
  revision (``main@sha1:<sha>``); credentials never leave the module (``FetchError``).
* ``artifacts``: the tree of one commit (only ``path``, minus ``ignore``) materialised read-only
  under ``<state>/artifacts/<source-id>/<sha>/``, bounded by ``core.limits``; old ones collected.
* ``inventory``: Flux's inventory (``<ns>_<name>_<group>_<Kind>`` + version), the diff of two
  inventories and the guard against a revision that would prune everything.
* ``apply``: server-side apply in order (CRDs served, namespaces, ``kinds.ORDER``), a digest to
  skip no-op writes, and prune of what left the inventory, honouring ``deletionPolicy``.
"""
