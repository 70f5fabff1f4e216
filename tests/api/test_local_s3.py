"""The local S3 server (emulator.service.local_s3, moto's server) over real HTTP with boto3, as
RunPod's rp_upload talks to it: a write to a bucket nobody made creates it; presigned URLs read back."""

from __future__ import annotations

import urllib.request
import uuid
from pathlib import Path

import pytest

from emulator.config import Settings
from emulator.models import Endpoint
from emulator.service.local_s3 import LocalS3, bucket_of
from emulator.workers.env import worker_env
from emulator.workers.records import WorkerRecord
from emulator.workers.resources import HostFacts
from emulator.workers.s3 import S3Access

pytest.importorskip("moto", reason="the local S3 server needs moto[server] (pip install -e '.[test]')")


def test_bucket_of_a_path() -> None:
    assert bucket_of("/11-26/job/a.png") == "11-26"
    assert bucket_of("/bucket") is None and bucket_of("/") is None and bucket_of("/bucket/") is None


def test_upload_to_a_bucket_nobody_made_and_read_it_back() -> None:
    import boto3
    from botocore.config import Config

    server = LocalS3("key", "secret")
    access = server.start("127.0.0.1", 0)
    try:
        client = boto3.session.Session().client(
            "s3",
            endpoint_url=access.endpoint_url,
            aws_access_key_id="key",
            aws_secret_access_key="secret",
            config=Config(signature_version="s3v4"),
        )
        # (moto keeps its buckets per process: a name of this test's own, as another test may have made "11-26")
        bucket = f"b-{uuid.uuid4().hex[:12]}"
        client.put_object(Bucket=bucket, Key="job-1/a.png", Body=b"image bytes", ContentType="image/png")
        client.put_object(Bucket=bucket, Key="job-2/b.png", Body=b"more")
        url = client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "job-1/a.png"})
        assert urllib.request.urlopen(url, timeout=10).read() == b"image bytes"
        assert bucket in [b["Name"] for b in client.list_buckets()["Buckets"]]
        keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]]
        assert keys == ["job-1/a.png", "job-2/b.png"]
    finally:
        server.stop()


def test_workers_of_a_local_s3_endpoint_get_the_bucket_variables() -> None:
    access = S3Access("http://gw:9000", "key", "secret")
    worker = WorkerRecord(id="w", endpoint_id="ep", token="t", version=1)
    settings = Settings(data_dir=Path("/nonexistent"))
    host = HostFacts(2, 2048)
    asks = Endpoint.model_validate({"id": "ep", "name": "ep", "imageName": "i", "localS3": True})
    env = worker_env(settings, "http://gw:1", asks, worker, host=host, s3=access)
    assert {k: env[k] for k in access.env()} == {
        "BUCKET_ENDPOINT_URL": "http://gw:9000",
        "BUCKET_ACCESS_KEY_ID": "key",
        "BUCKET_SECRET_ACCESS_KEY": "secret",
    }
    own = asks.model_copy(update={"env": {"BUCKET_ENDPOINT_URL": "https://my-bucket.example"}})
    assert worker_env(settings, "http://gw:1", own, worker, host=host, s3=access)["BUCKET_ENDPOINT_URL"] == (
        "https://my-bucket.example"
    )
    plain = asks.model_copy(update={"localS3": False})
    assert "BUCKET_ENDPOINT_URL" not in worker_env(
        settings, "http://gw:1", plain, worker, host=host, s3=access
    )
