"""Dedicated Redis (Valkey) and Kafka (Tansu) servers for scenarios that stop or restart them.

Never the machine's shared Redis on 6379 or the session's Tansu: every stack gets its own on free
ports. A Tansu that must survive a restart with its records and committed offsets stores them in S3,
served here by a local ``moto_server`` (memory storage would come back empty).
"""

from __future__ import annotations

from dataclasses import dataclass

import boto3

from sandbox.stack import embedded
from tests.faults.procs import venv_command

S3_BUCKET = "tansu"
S3_KEY_ID = "faults-test-key"
S3_SECRET = "faults-test-secret"  # a throwaway key for a local moto server, not a real credential


@dataclass
class LocalS3:
    """A moto S3 server with one bucket, the storage behind a restartable Tansu."""

    server: embedded.EmbeddedServer

    @property
    def endpoint(self) -> str:
        return f"http://{self.server.host}:{self.server.port}"

    def tansu_env(self) -> dict[str, str]:
        """What Tansu's object-store client reads to reach this server over plain HTTP."""
        return {
            "AWS_ENDPOINT": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": S3_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def create_bucket(self, name: str = S3_BUCKET) -> None:
        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=S3_KEY_ID,
            aws_secret_access_key=S3_SECRET,
            region_name="us-east-1",
        )
        client.create_bucket(Bucket=name)

    def stop(self) -> None:
        self.server.stop()


def local_s3() -> LocalS3:
    port = embedded.free_port()
    argv = [venv_command("moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    server = embedded.EmbeddedServer(name="moto-s3", argv=argv, host="127.0.0.1", port=port).start()
    s3 = LocalS3(server)
    s3.create_bucket()
    return s3


def persistent_tansu(s3: LocalS3) -> embedded.EmbeddedServer:
    """A Tansu whose records and consumer-group offsets survive ``kill``/``restart`` (S3 storage)."""
    return embedded.tansu(storage=f"s3://{S3_BUCKET}/", env=s3.tansu_env())


def dedicated_valkey() -> embedded.EmbeddedServer:
    """A Valkey of our own: a scenario may stop it without touching anyone else's Redis."""
    return embedded.valkey()


__all__ = ["LocalS3", "dedicated_valkey", "local_s3", "persistent_tansu"]
