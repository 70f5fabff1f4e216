"""Pure parts of image pulls: references, progress documents, the engine's errors in users' words, and
the pull policy. The documents are shaped as the Docker engine streams them (captured from a pull)."""

from __future__ import annotations

import pytest

from emulator.runtime.base import LocalImage
from emulator.runtime.pull_docs import (
    PullProgress,
    describe_progress,
    explain_pull_error,
    parse_image,
    same_repository,
)
from emulator.supervisor.pull_policy import decide


@pytest.mark.parametrize(
    ("image", "registry", "repository", "tag", "digest", "latest"),
    [
        ("python", "docker.io", "python", None, None, True),
        ("python:3.12-slim", "docker.io", "python", "3.12-slim", None, False),
        ("user/app:latest", "docker.io", "user/app", "latest", None, True),
        ("127.0.0.1:5000/team/app:v1", "127.0.0.1:5000", "127.0.0.1:5000/team/app", "v1", None, False),
        ("localhost/app", "localhost", "localhost/app", None, None, True),
        (
            "registry.example.com/o/app@sha256:" + "a" * 64,
            "registry.example.com",
            "registry.example.com/o/app",
            None,
            "sha256:" + "a" * 64,
            False,
        ),
        ("127.0.0.1:5000/app", "127.0.0.1:5000", "127.0.0.1:5000/app", None, None, True),
    ],
)
def test_parse_image(
    image: str, registry: str, repository: str, tag: str | None, digest: str | None, latest: bool
) -> None:
    ref = parse_image(image)
    assert (ref.registry, ref.repository, ref.tag, ref.digest, ref.is_latest) == (
        registry,
        repository,
        tag,
        digest,
        latest,
    )
    assert ref.pull_tag == (digest or tag or "latest")


def test_parse_image_refuses_empty() -> None:
    with pytest.raises(ValueError):
        parse_image("  ")


def test_same_repository_knows_docker_hub_spellings() -> None:
    assert same_repository("python@sha256:x", parse_image("python:latest"))
    assert same_repository("library/python@sha256:x", parse_image("python"))
    assert same_repository("127.0.0.1:5000/a/b@sha256:x", parse_image("127.0.0.1:5000/a/b:latest"))
    assert not same_repository("127.0.0.1:5000/a/b@sha256:x", parse_image("a/b:latest"))


def test_progress_counts_layers_and_bytes() -> None:
    p = PullProgress()
    docs = [
        {"status": "Pulling from team/app", "id": "v1"},
        {"status": "Already exists", "id": "l1", "progressDetail": {}},
        {"status": "Pulling fs layer", "id": "l2", "progressDetail": {}},
        {"status": "Waiting", "id": "l3", "progressDetail": {}},
        {"status": "Downloading", "id": "l2", "progressDetail": {"current": 1000, "total": 4000}},
        {"status": "Downloading", "id": "l3", "progressDetail": {"current": 10, "total": 100}},
    ]
    for doc in docs:
        p.feed(doc)
    snap = p.snapshot()
    assert (snap["layersDone"], snap["layersTotal"], snap["bytesDone"], snap["bytesTotal"]) == (
        1,
        3,
        1010,
        4100,
    )
    for doc in [
        {"status": "Download complete", "id": "l2", "progressDetail": {}},
        {"status": "Extracting", "id": "l2", "progressDetail": {"current": 5, "total": 4000}},
        {"status": "Pull complete", "id": "l2", "progressDetail": {}},
        {"status": "Pull complete", "id": "l3", "progressDetail": {}},
        {"status": "Digest: sha256:" + "b" * 64},
        {"status": "Status: Downloaded newer image for 127.0.0.1:5000/team/app:v1"},
    ]:
        p.feed(doc)
    snap = p.snapshot()
    assert (snap["layersDone"], snap["bytesDone"], snap["bytesTotal"]) == (3, 4100, 4100)
    assert snap["digest"] == "sha256:" + "b" * 64 and p.error is None
    assert describe_progress(
        "app:v1", {"layersDone": 1, "layersTotal": 3, "bytesDone": 1048576, "bytesTotal": 4194304}
    ) == ("pulling app:v1: 1/3 layers, 1.0 of 4.0 MB")


def test_progress_keeps_an_error_document() -> None:
    p = PullProgress()
    p.feed(
        {
            "errorDetail": {"message": "unauthorized: authentication required"},
            "error": "unauthorized: authentication required",
        }
    )
    assert p.error == "unauthorized: authentication required"


@pytest.mark.parametrize(
    ("text", "credential", "starts", "mentions"),
    [
        ("unauthorized: authentication required", "abc", "authentication failed", "'abc'"),
        (
            'Head "http://127.0.0.1:5/v2/a/manifests/v1": no basic auth credentials',
            None,
            "authentication failed",
            "~/.docker/config.json",
        ),
        (
            "manifest for 127.0.0.1:5/a:nope not found: manifest unknown: manifest unknown",
            None,
            "no such tag",
            "'nope'",
        ),
        (
            "pull access denied for nosuch, repository does not exist or may require 'docker login'",
            None,
            "no such image",
            "imageName",
        ),
        (
            'Get "http://127.0.0.1:5999/v2/": dial tcp 127.0.0.1:5999: connect: connection refused',
            None,
            "registry unreachable",
            "127.0.0.1:5",
        ),
        ("something else entirely", None, "pull of", "something else"),
    ],
)
def test_pull_errors_in_words_a_user_acts_on(
    text: str, credential: str | None, starts: str, mentions: str
) -> None:
    said = explain_pull_error("127.0.0.1:5/a:nope", text, credential)
    assert said.startswith(starts) and mentions in said and text in said


LOCAL_BUILD = LocalImage("sha256:1")
FROM_REGISTRY = LocalImage("sha256:2", ("127.0.0.1:5000/a@sha256:" + "c" * 64,))


@pytest.mark.parametrize(
    ("policy", "image", "local", "done", "verdict"),
    [
        (None, "127.0.0.1:5000/a:v1", None, False, "pull"),
        ("IF_MISSING", "127.0.0.1:5000/a:v1", None, False, "pull"),
        ("ALWAYS", "127.0.0.1:5000/a:v1", None, False, "pull"),
        ("NEVER", "127.0.0.1:5000/a:v1", None, False, "missing"),
        (None, "serverless-emulator/sample-echo:latest", LOCAL_BUILD, False, "use-local"),  # built here
        (None, "127.0.0.1:5000/a:latest", FROM_REGISTRY, False, "pull"),  # floating tag from a registry
        (None, "127.0.0.1:5000/a:latest", FROM_REGISTRY, True, "use-local"),  # once per version
        (None, "127.0.0.1:5000/a:v1", FROM_REGISTRY, False, "use-local"),
        ("IF_MISSING", "127.0.0.1:5000/a:latest", FROM_REGISTRY, False, "use-local"),
        ("ALWAYS", "127.0.0.1:5000/a:v1", LOCAL_BUILD, False, "pull"),
        ("ALWAYS", "127.0.0.1:5000/a:v1", LOCAL_BUILD, True, "use-local"),
        ("NEVER", "127.0.0.1:5000/a:latest", FROM_REGISTRY, False, "use-local"),
    ],
)
def test_pull_policy(
    policy: str | None, image: str, local: LocalImage | None, done: bool, verdict: str
) -> None:
    decision = decide(policy, image, local, done)  # type: ignore[arg-type]
    assert decision.verdict == verdict, decision.why
    assert decision.fallback_to_local == (verdict == "pull" and policy is None and local is not None)
