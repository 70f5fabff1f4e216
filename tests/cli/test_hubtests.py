"""The test files of `serverless-emulator test` and RunPod's pass rule, without Docker: the Hub's
tests.json/hub.json, runpod-test-runner's .github/tests.json, test_input.json; the JUnit XML file and
the GitHub Actions summary."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from emulator.cli import hubtests, reports
from emulator.cli.check import dockerfile_for, load_plan
from emulator.cli.hubtests import NOTHING, TestCase, judge

REPOS = Path(__file__).resolve().parent / "repos"
HUB = REPOS / "hub-worker"
RUNNER = REPOS / "runner-worker"


def test_discovery_order(tmp_path: Path) -> None:
    assert hubtests.find_tests(tmp_path, None) is None
    (tmp_path / "test_input.json").write_text('{"input": 1}')
    assert hubtests.find_tests(tmp_path, None) == ("inputs", tmp_path / "test_input.json")
    (tmp_path / ".github").mkdir()
    (tmp_path / ".github" / "tests.json").write_text("[]")
    assert hubtests.find_tests(tmp_path, None) == ("test-runner", tmp_path / ".github" / "tests.json")
    (tmp_path / ".runpod").mkdir()
    (tmp_path / ".runpod" / "tests.json").write_text("{}")
    assert hubtests.find_tests(tmp_path, None) == ("hub", tmp_path / ".runpod" / "tests.json")
    chosen = tmp_path / "mine.json"
    assert hubtests.find_tests(tmp_path, chosen) == ("inputs", chosen)  # --input wins


def test_dockerfile_precedence(tmp_path: Path) -> None:
    assert dockerfile_for(tmp_path) == tmp_path / "Dockerfile"
    (tmp_path / ".runpod").mkdir()
    (tmp_path / ".runpod" / "Dockerfile").write_text("FROM scratch\n")
    assert dockerfile_for(tmp_path) == tmp_path / ".runpod" / "Dockerfile"
    assert dockerfile_for(HUB) == HUB / ".runpod" / "Dockerfile"


def test_sniffing_an_input_file() -> None:
    assert hubtests.sniff_kind({"tests": []}) == "hub"
    assert hubtests.sniff_kind([{"input": 1, "output": 1}]) == "test-runner"
    assert hubtests.sniff_kind([{"input": 1, "expected_output": {"status": "COMPLETED"}}]) == "test-runner"
    assert hubtests.sniff_kind([{"input": 1}]) == "inputs"
    assert hubtests.sniff_kind({"input": {"tests": 1}}) == "inputs"


def test_hub_fixture_plan() -> None:
    plan = load_plan(HUB, None, None)
    assert plan.kind == "hub" and plan.source == str(HUB / ".runpod" / "tests.json")
    assert [c.name for c in plan.cases] == ["greets_with_hub_defaults", "tests_json_env_overrides_hub_json"]
    first = plan.cases[0]
    assert first.request == {
        "input": {"name": "Ada", "expect_env": {"GREETING": "Hello", "MODE": "fixture", "SHOUT": "false"}}
    }
    assert first.timeout_s == 20 and first.no_error and first.expected is NOTHING
    # hub.json defaults and static values, tests.json's config.env over them; no default: not set
    assert plan.env == {"GREETING": "Hello", "PUNCTUATION": "!", "SHOUT": "false", "MODE": "fixture"}
    assert plan.gpu_count == 0


def test_hub_env_and_gpus() -> None:
    hub = {
        "config": {
            "gpuCount": 2,
            "env": [
                {"key": "A", "input": {"default": 1}},
                {"key": "B", "input": {"default": True}},
                {"key": "C", "input": {"default": {"x": [1]}}},
                {"key": "D", "value": "static"},
                {"key": "E", "input": {"name": "no default"}},
            ],
        }
    }
    assert hubtests.hub_defaults(hub, "hub.json") == (
        {"A": "1", "B": "true", "C": '{"x": [1]}', "D": "static"},
        2,
    )
    plan = hubtests.parse_hub({"tests": [{"input": {}}]}, "t.json", hub)
    assert plan.gpu_count == 2 and plan.cases[0].name == "test 1" and plan.cases[0].timeout_s is None
    own = hubtests.parse_hub(
        {"tests": [{"input": {}}], "config": {"gpuCount": 1, "env": {"A": "x"}}}, "t", hub
    )
    assert own.gpu_count == 1 and own.env["A"] == "x"  # tests.json's config wins over hub.json's


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([{"input": 1}], 'must be an object like {"tests"'),
        ({"tests": []}, "holds no tests"),
        ({"tests": [{"name": "x"}]}, 'test 1 must be an object with an "input"'),
        ({"tests": [{"input": 1, "timeout": -5}]}, "timeout must be a number of milliseconds > 0"),
        ({"tests": [{"input": 1, "timeout": "30s"}]}, "timeout must be a number of milliseconds"),
        ({"tests": [{"input": 1, "name": ""}]}, "name must be a non-empty string"),
        ({"tests": [{"input": 1, "name": "a"}, {"input": 2, "name": "a"}]}, "two tests are named 'a'"),
        ({"tests": [{"input": 1}], "config": {"env": [{"value": "x"}]}}, 'config.env item 1 needs a "key"'),
        ({"tests": [{"input": 1}], "config": {"gpuCount": "one"}}, "config.gpuCount must be a whole number"),
    ],
)
def test_bad_hub_files_are_named(data: Any, message: str) -> None:
    with pytest.raises(ValueError, match="^t.json") as raised:
        hubtests.parse_hub(data, "t.json")
    assert message in str(raised.value)


def test_runner_fixture_plan() -> None:
    plan = load_plan(RUNNER, None, None)
    assert plan.kind == "test-runner" and len(plan.cases) == 3
    first, status_only, both = plan.cases
    assert first.expected == {"message": "hi"} and first.status == "COMPLETED"
    assert status_only.expected is NOTHING and status_only.status == "COMPLETED"
    assert both.expected == {"n": 2}
    failed = hubtests.parse_runner([{"input": 1, "output": {"status": "FAILED"}}], "f").cases[0]
    assert failed.status == "FAILED" and failed.expected is NOTHING
    with pytest.raises(ValueError, match="item 1: expected status 'DONE'"):
        hubtests.parse_runner([{"input": 1, "output": {"status": "DONE"}}], "f")
    with pytest.raises(ValueError, match="must be a non-empty list"):
        hubtests.parse_runner({"input": 1}, "f")


def test_expected_output_belongs_to_test_input_json_only(tmp_path: Path) -> None:
    (tmp_path / "test_input.json").write_text('{"input": {"a": 1}}')
    (tmp_path / "expected_output.json").write_text('{"output": {"a": 1}}')
    assert load_plan(tmp_path, None, None).cases[0].expected == {"a": 1}
    other = tmp_path / "other.json"
    other.write_text('{"input": {"b": 2}}')
    plan = load_plan(tmp_path, other, None)  # --input: DIR/expected_output.json is not its expectation
    assert plan.cases[0].request == {"input": {"b": 2}} and plan.cases[0].expected is NOTHING


def test_has_error() -> None:
    assert hubtests.has_error({"error": None})
    assert hubtests.has_error([{"ok": 1}, {"error": "x"}])
    assert not hubtests.has_error({"text": "error"})
    assert not hubtests.has_error(["error", 1, None])
    assert not hubtests.has_error("error")
    assert not hubtests.has_error([[{"error": 1}]])  # only dicts directly in the list, as RunPod checks


def test_judge() -> None:
    hub = TestCase("t", {"input": {}}, no_error=True)
    assert judge(hub, {"status": "COMPLETED", "output": {"text": "ok"}}).problem is None
    assert (
        judge(hub, {"status": "COMPLETED", "output": {"error": "bad"}}).problem
        == "the output holds an error: bad"
    )
    assert (
        judge(hub, {"status": "COMPLETED", "output": [{}, {"error": {"code": 1}}]}).problem
        == 'the output holds an error: {"code": 1}'
    )
    assert judge(hub, {"status": "FAILED", "error": "boom"}).problem == "job FAILED: boom"
    plain = TestCase("t", {"input": {}})
    assert judge(plain, {"status": "COMPLETED", "output": {"error": "x"}}).problem is None  # no Hub rule
    wants = TestCase("t", {"input": {}}, expected={"a": 1})
    verdict = judge(wants, {"status": "COMPLETED", "output": {"a": 2}})
    assert verdict.problem == "output differs from the expected output"
    assert verdict.diff is not None and '-  "a": 1' in verdict.diff and '+  "a": 2' in verdict.diff
    cancelled = TestCase("t", {"input": {}}, status="CANCELLED")
    assert judge(cancelled, {"status": "CANCELLED"}).problem is None
    assert (
        judge(cancelled, {"status": "COMPLETED", "output": 1}).problem == "job COMPLETED (expected CANCELLED)"
    )


def _results() -> list[reports.JobResult]:
    ok = reports.JobResult(
        TestCase("good", {"input": {}}, no_error=True),
        {
            "status": "COMPLETED",
            "output": {"x": 1},
            "executionTime": 120,
            "coldStart": {"coldStart": True, "createMs": 100, "startMs": 200, "readyMs": 700},
        },
        seconds=1.25,
    )
    bad = reports.JobResult(
        TestCase("bad|name", {"input": {}}, no_error=True),
        {"status": "COMPLETED", "output": {"error": "nope"}},
        hubtests.Verdict("the output holds an error: nope"),
        logs="line 1\nline 2\n",
        seconds=0.5,
    )
    return [ok, bad]


def test_junit_xml(tmp_path: Path) -> None:
    path = tmp_path / "out" / "junit.xml"
    reports.write_junit(path, _results(), "serverless-emulator test img:1")
    suite = ET.parse(path).getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures")) == ("2", "1")
    good, bad = suite.findall("testcase")
    assert good.get("name") == "good" and float(good.get("time") or 0) == 1.25
    assert good.find("failure") is None
    assert json.loads(good.findtext("system-out") or "")["output"] == {"x": 1}
    failure = bad.find("failure")
    assert failure is not None and failure.get("message") == "the output holds an error: nope"
    assert bad.findtext("system-err") == "line 1\nline 2\n"


def test_junit_xml_when_the_image_failed(tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    reports.write_junit(path, [], "s", "the image did not build from Dockerfile\nstep 2 failed")
    suite = ET.parse(path).getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "1"
    failure = suite.find("testcase/failure")
    assert failure is not None and failure.get("message") == "the image did not build from Dockerfile"


def test_github_summary_and_outputs() -> None:
    text = reports.summary_markdown(_results(), "img:1", ["2 emulated GPU(s)"])
    assert text.startswith("### ❌ serverless-emulator test: `img:1`")
    assert "1 of 2 test(s) passed." in text and "> 2 emulated GPU(s)" in text
    assert "| good | COMPLETED | pass | 1.0 s | 0.12 s | 1.2 s |" in text
    assert "| bad\\|name | COMPLETED | **FAIL** |" in text
    assert "line 2" in text
    assert reports.step_outputs(_results()) == "total-tests=2\nsucceeded=1\nfailed=1\n"
    assert reports.summary_markdown(_results()[:1], "img:1").startswith("### ✅")
    nothing = reports.summary_markdown([], "img:1", ["the image did not build"])
    assert nothing.startswith("### ❌") and "> the image did not build" in nothing


def test_gpu_settings_emulate_what_the_host_lacks(monkeypatch: pytest.MonkeyPatch) -> None:
    from emulator.cli.check import gpu_settings

    monkeypatch.setenv("EMULATOR_GPUS", "7")  # the host "has" one GPU
    monkeypatch.delenv("EMULATOR_GPU_MODE", raising=False)
    assert gpu_settings(0) == ({}, []) and gpu_settings(1) == ({}, [])
    overrides, notes = gpu_settings(3)
    assert overrides == {"gpu_mode": "emulate", "gpus": None, "emulated_gpus": 3}
    assert notes and notes[0].startswith("the tests ask for 3 GPU(s) and this host has 1:")
