"""What a worker of an endpoint with ``localS3`` is told about the local S3 server (``emulator.service.local_s3``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class S3Access:
    """The server's URL and a key pair (moto accepts any), as RunPod's ``rp_upload`` reads them."""

    endpoint_url: str
    access_key_id: str
    secret_access_key: str

    def env(self) -> dict[str, str]:
        """RunPod's variables for ``rp_upload``: ``BUCKET_ENDPOINT_URL``, ``BUCKET_ACCESS_KEY_ID``,
        ``BUCKET_SECRET_ACCESS_KEY``."""
        return {
            "BUCKET_ENDPOINT_URL": self.endpoint_url,
            "BUCKET_ACCESS_KEY_ID": self.access_key_id,
            "BUCKET_SECRET_ACCESS_KEY": self.secret_access_key,
        }
