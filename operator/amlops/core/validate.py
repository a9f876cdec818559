"""The whole check of a manifest tree: load -> schema -> Azure ML SDK -> references -> policies.

Every stage reports all it finds; later stages skip only the objects an earlier stage rejected
outright (a body that fails its schema is not fed to the policy rules, which assume its shape).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from amlops.core import azureml, files, refs
from amlops.core.config import RepoConfig, excepted, find_config, suppressed
from amlops.core.credentials import secret_literals
from amlops.core.findings import Finding, redact, sort_findings
from amlops.core.limits import Limits, current
from amlops.core.manifests import Manifest, gc_paused, load_tree
from amlops.core.policy import RULE_AZUREML_NAME, PolicySet, configured_policies
from amlops.core.schemas import SchemaSet, load_schemas
from amlops.kinds.base import Outside


@dataclass
class Report:
    manifests: list[Manifest]
    findings: list[Finding]
    files: int = 0
    skipped: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.is_error]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if not f.is_error]

    @property
    def ok(self) -> bool:
        return not self.errors

    def kinds(self) -> dict[str, int]:
        return dict(sorted(Counter(m.kind for m in self.manifests).items()))

    def of_kind(self, *kinds: str) -> list[Manifest]:
        return [m for m in self.manifests if m.kind in kinds]


def validate_paths(
    paths: Sequence[Path | str],
    *,
    texts: dict[str, str] | None = None,
    check_files: bool = True,
    sdk: bool = True,
    schemas: SchemaSet | None = None,
    policies: PolicySet | None = None,
    root: Path | str | None = None,
    limits: Limits | None = None,
    config: RepoConfig | None = None,
) -> Report:
    """Validate every manifest under ``paths`` (or the given ``texts``: file name -> content).

    ``check_files`` checks that ``path:``/``code:`` targets exist, are files or folders and fit
    the size limits (off for Git revisions that are not checked out: then only where they
    point is checked); ``sdk`` runs the ``azure-ai-ml`` loaders over the embedded parts.
    ``root`` is the source root every file must stay inside (default: the Git top level of
    each path, see ``amlops.core.files``); ``limits`` default to ``amlops.core.limits``'s.
    ``config`` is the repository config (default: the ``amlops.yaml`` of the first path's
    repository, see ``amlops.core.config``); ``policies``, when given, replace the configured
    rule set (disabling and re-grading are then the caller's).
    """
    limits = limits or current()
    if config is None:
        config = find_config(paths, limits)
    with gc_paused():
        return _validate(paths, texts, check_files, sdk, schemas, policies, root, limits, config)


def _validate(
    paths: Sequence[Path | str],
    texts: dict[str, str] | None,
    check_files: bool,
    sdk: bool,
    schemas: SchemaSet | None,
    policies: PolicySet | None,
    root: Path | str | None,
    limits: Limits,
    config: RepoConfig,
) -> Report:
    workspace = config.workspace.name if config.workspace else None
    loaded = load_tree(
        paths,
        texts,
        root=root,
        limits=limits,
        default_workspace=config.workspace,
        exclude=config.excludes,
    )
    findings = [*loaded.findings, *config.findings]
    schemas = schemas or load_schemas()
    if policies is None:
        policies, config_findings = configured_policies(config)
        findings.extend(config_findings)
    valid: list[Manifest] = []
    for manifest in loaded.manifests:
        problems = schemas.check(manifest)
        findings.extend(problems)
        if not any(p.is_error for p in problems):
            valid.append(manifest)
    checker = files.Checker(limits)
    for manifest in valid:
        problems = refs.check_files(manifest, checker, on_disk=check_files)
        findings.extend(problems)
        # The SDK loaders read the files a part names (conda files, components): never
        # hand them one the containment rule refused.
        if sdk and not files.refused(p.rule for p in problems):
            findings.extend(azureml.check(manifest))
    if sdk:
        for loader, doc in loaded.sdk_only:
            findings.extend(azureml.check_document(doc, loader))
    ref_findings = refs.check(loaded.manifests, valid, Outside(workspace, config.external))
    policy_ids = [p.id for p in policies.policies]
    policy_findings = suppressed(
        excepted(config, policies.evaluate(valid, loaded.manifests), policy_ids),
        policy_ids,
        texts,
    )
    # The SDK also rejects some dangling references and endpoint names; ours say more (and
    # what to write instead), so keep one per line.
    ours = [*ref_findings, *(f for f in policy_findings if f.rule == RULE_AZUREML_NAME)]
    ref_lines = {(f.file, f.line) for f in ours}
    findings = [
        f for f in findings if not (f.rule == azureml.RULE and (f.file, f.line) in ref_lines)
    ]
    findings.extend(ref_findings)
    findings.extend(policy_findings)
    return Report(
        manifests=loaded.manifests,
        findings=_masked(sort_findings(list(dict.fromkeys(findings))), loaded.manifests),
        files=loaded.files,
        skipped=loaded.skipped,
    )


def _masked(findings: list[Finding], manifests: Sequence[Manifest]) -> list[Finding]:
    """Findings with the manifests' secret values masked in messages that quote them (a schema
    error about ``DB_PASSWORD: 12345``): done here, so every driver (validate, plan, up, apply,
    the operator's conditions) prints the same masked text."""
    if not findings:  # the common case: no need to look for secrets to mask
        return findings
    literals: set[str] = set()
    for m in manifests:
        literals |= secret_literals(m.body)
    return redact(findings, literals)
