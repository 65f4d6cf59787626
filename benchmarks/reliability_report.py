"""The reliability figures: runs ``tests/reliability`` and the gateway's malformed-request test
with pytest, reads the JUnit XML it writes, and prints one JSON line.

* ``faults_injected`` / ``faults_survived``: tests that inject a fault (``reliability=fault``
  property, see ``tests/reliability/conftest.py``) that ran / that passed (a pass means every
  invariant held: what the platform did, nothing lost, no unvalidated model moved);
* ``race_trials`` / ``race_violations``: summed ``race_trials`` and ``race_violations``
  properties of the race tests (a race test that errored before recording counts one violation);
* ``bad_inputs_tried`` / ``bad_inputs_rejected_cleanly``: the bad-config corpus cases and the
  malformed gateway requests that ran / that passed;
* ``secret_leaks``: (secret, sink) pairs found by the secrets test (one per secrets test that
  errored before recording).

Also ``tests``, ``failed``, ``skipped`` (with their ids) and ``seconds``. Exit 0 when every
fault survived, no race violation, every bad input rejected cleanly and no leak; else 1.
Nothing is hard-coded: every figure comes from the run.

    .venv/bin/python benchmarks/reliability_report.py [-k EXPR] [extra pytest args]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGETS = [
    "tests/reliability",
    "tests/integration/test_gateway.py::test_malformed_requests_get_a_clean_4xx_and_log_nothing",
]
BAD_INPUT_TESTS = (
    "test_each_bad_config_is_rejected_with_its_file_and_field",
    "test_malformed_requests_get_a_clean_4xx_and_log_nothing",
)


def _outcome(case: ET.Element) -> str:
    if case.find("skipped") is not None:
        return "skipped"
    if case.find("failure") is not None or case.find("error") is not None:
        return "failed"
    return "passed"


def summarize(junit_xml: Path) -> dict:
    """The report's figures from a JUnit XML file written by pytest."""
    figures = {
        "faults_injected": 0,
        "faults_survived": 0,
        "race_trials": 0,
        "race_violations": 0,
        "bad_inputs_tried": 0,
        "bad_inputs_rejected_cleanly": 0,
        "secret_leaks": 0,
    }
    tests, failed, skipped = 0, [], []
    for case in ET.parse(junit_xml).getroot().iter("testcase"):
        name = case.get("name", "")
        test_id = f"{case.get('classname')}::{name}"
        outcome = _outcome(case)
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        # a failure in teardown adds a second <testcase> element with the same id
        tests += 1
        if outcome == "failed":
            failed.append(test_id)
        elif outcome == "skipped":
            skipped.append(test_id)
            continue
        kind = props.get("reliability")
        if name.split("[")[0] in BAD_INPUT_TESTS:
            figures["bad_inputs_tried"] += 1
            figures["bad_inputs_rejected_cleanly"] += outcome == "passed"
        elif kind == "fault":
            figures["faults_injected"] += 1
            figures["faults_survived"] += outcome == "passed"
        elif kind == "race" or (kind is None and "test_race_" in name):
            if "race_violations" in props:
                figures["race_trials"] += int(props.get("race_trials") or 0)
                figures["race_violations"] += int(props["race_violations"])
            else:
                figures["race_violations"] += outcome != "passed"
        elif kind == "secrets" or (kind is None and "test_secret_" in name):
            if "secret_leaks" in props:
                figures["secret_leaks"] += int(props["secret_leaks"])
            else:
                figures["secret_leaks"] += outcome != "passed"
    return {**figures, "tests": tests, "failed": failed, "skipped": skipped}


def ok(report: dict) -> bool:
    return (
        report["faults_injected"] > 0
        and report["faults_survived"] == report["faults_injected"]
        and report["race_trials"] > 0
        and report["race_violations"] == 0
        and report["bad_inputs_tried"] > 0
        and report["bad_inputs_rejected_cleanly"] == report["bad_inputs_tried"]
        and report["secret_leaks"] == 0
        and not report["failed"]
    )


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="reliability_report_") as tmp:
        junit = Path(tmp) / "junit.xml"
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            *TARGETS,
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={junit}",
            "-o",
            "junit_family=xunit1",
            *argv,
        ]
        t0 = time.monotonic()
        proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, "RETRAIN_STRICT": "1"}, stdout=sys.stderr)
        seconds = round(time.monotonic() - t0, 1)
        if not junit.exists():
            print(json.dumps({"error": f"pytest wrote no report (exit {proc.returncode})"}))
            return 2
        report = {**summarize(junit), "seconds": seconds, "pytest_exit": proc.returncode}
    print(json.dumps(report))
    return 0 if ok(report) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
