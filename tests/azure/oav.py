"""Validate recorded fake-ARM traffic against the vendored REST specs with Microsoft's oav.

    python -m tests.azure.oav TRAFFIC_DIR [--out DIR]

runs ``oav validate-traffic TRAFFIC_DIR tests/azure/specs/specification --jsonReport FILE`` and
ends with ``RESULT operations=N operation_ids=M spec_violations=K`` (exit 1 when K > 0).

A violation is an error in oav's JSON report, an operation oav could not validate at all
(runtime exception), or a recorded operation oav found no spec for. One SDK quirk is allowed,
nothing else: :func:`is_allowed_quirk`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.azure.azurite import OAV_VERSION, tool_path

SPEC_DIR = Path(__file__).resolve().parent / "specs" / "specification"


@dataclass
class OavResult:
    operations: int  # recorded request/response pairs
    operation_ids: int  # distinct operationIds among them
    violations: list[dict[str, Any]] = field(default_factory=list)
    allowed: list[dict[str, Any]] = field(default_factory=list)
    covered: int = 0  # operationIds oav matched to a spec
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def result_line(self) -> str:
        return (
            f"RESULT operations={self.operations} operation_ids={self.operation_ids} "
            f"spec_violations={len(self.violations)}"
        )


def recorded_operations(traffic_dir: Path) -> Counter[str]:
    """operationId -> number of recorded pairs (from the file names the recorder writes)."""
    ops: Counter[str] = Counter()
    for path in traffic_dir.glob("*.json"):
        ops[path.stem.rsplit("-", 1)[-1]] += 1
    return ops


def _int_hash_versions(traffic_dir: Path) -> int:
    """How many recorded CodeVersions_CreateOrUpdate requests send hash_version as an int."""
    count = 0
    for path in traffic_dir.glob("*-CodeVersions_CreateOrUpdate.json"):
        body = json.loads(path.read_text())["liveRequest"].get("body") or {}
        value = body.get("properties", {}).get("properties", {}).get("hash_version")
        if isinstance(value, int) and not isinstance(value, bool):
            count += 1
    return count


def is_allowed_quirk(error: dict[str, Any]) -> bool:
    """azure-ai-ml sends ``properties.properties.hash_version`` of a code version as an
    integer where the spec's string->string map wants a string (documented in
    /work/shared/azure-rest-api-specs/README.md). Only that request-side error is allowed."""
    return (
        error.get("operationId") == "CodeVersions_CreateOrUpdate"
        and error.get("issueSource") == "request"
        and error.get("errorCode") == "INVALID_TYPE"
        and error.get("errorMessage") == "Expected type string but found type integer"
    )


def run_oav(traffic_dir: Path, out_dir: Path, *, timeout: float = 300.0) -> OavResult:
    oav = tool_path("oav", OAV_VERSION, "oav")
    if oav is None:
        raise RuntimeError("node/npm are not installed: cannot run oav")
    out_dir.mkdir(parents=True, exist_ok=True)
    report_path = out_dir / "oav-report.json"
    report_path.unlink(missing_ok=True)
    log_path = out_dir / "oav-output.txt"
    # --report "": no HTML report (its template is missing from the npm package); the JSON
    # report is the contract, the console output only adds "Undefined operation" lines.
    proc = subprocess.run(
        [
            str(oav),
            "validate-traffic",
            str(traffic_dir),
            str(SPEC_DIR),
            "--jsonReport",
            str(report_path),
            "--report",
            "",
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    log_path.write_text(proc.stdout + proc.stderr)
    if not report_path.exists():
        raise RuntimeError(f"oav wrote no report (exit {proc.returncode}); see {log_path}")
    report: dict[str, Any] = json.loads(report_path.read_text())
    recorded = recorded_operations(traffic_dir)
    result = OavResult(
        operations=sum(recorded.values()),
        operation_ids=len(recorded),
        report=report,
        covered=int(report.get("coveredOperations", 0)),
    )
    # oav lists an error once per spec file an operation matched: count distinct ones.
    seen: set[tuple[str, ...]] = set()
    quirk_budget = _int_hash_versions(traffic_dir)
    allowed_seen: set[tuple[str, ...]] = set()
    for error in report.get("errors", []):
        key = tuple(
            str(error.get(k))
            for k in (
                "operationId",
                "issueSource",
                "errorCode",
                "errorMessage",
                "schemaPathWithPosition",
            )
        )
        if is_allowed_quirk(error) and quirk_budget > 0:
            if key not in allowed_seen:
                allowed_seen.add(key)
                result.allowed.append(error)
            continue
        if key not in seen:
            seen.add(key)
            result.violations.append(error)
    errored_ops = {str(e.get("operationId")) for e in report.get("errors", [])}
    passed = {
        op
        for entry in report.get("passedOperationsList", [])
        for op in entry.get("operationIds", [])
    }
    for op in sorted(set(recorded) - passed - errored_ops):
        result.violations.append(
            {
                "operationId": op,
                "errorCode": "NOT_VALIDATED",
                "errorMessage": f"oav matched no spec operation or threw; see {log_path}",
            }
        )
    for line in (proc.stdout + proc.stderr).splitlines():
        if "Undefined operation" in line:
            result.violations.append(
                {"errorCode": "UNDEFINED_OPERATION", "errorMessage": line.strip()}
            )
    return result


def describe(result: OavResult) -> str:
    lines = [
        f"{v.get('operationId', '?')} {v.get('issueSource', '')} "
        f"{v.get('errorCode')}: {v.get('errorMessage')}"
        for v in result.violations
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("traffic_dir", type=Path)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="oav-"))
    traffic: Path = args.traffic_dir
    if not any(traffic.glob("*.json")):
        print(f"no recorded traffic in {traffic}", file=sys.stderr)
        print("RESULT operations=0 operation_ids=0 spec_violations=0")
        return 1
    result = run_oav(traffic, out)
    for op, n in sorted(recorded_operations(traffic).items()):
        print(f"  {n:4d}  {op}")
    if result.allowed:
        print(
            "allowed SDK quirk (CodeVersions_CreateOrUpdate hash_version int):",
            len(result.allowed),
        )
    if result.violations:
        print(describe(result))
    print(f"oav report: {out / 'oav-report.json'}")
    print(result.result_line)
    return 1 if result.violations else 0


if __name__ == "__main__":
    sys.exit(main())
