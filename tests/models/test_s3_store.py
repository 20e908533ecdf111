"""The S3-compatible image store against a real S3 endpoint over HTTP (moto's server), and the
directory store's side of the same interface."""

from __future__ import annotations

import uuid

import pytest
import requests

from models.image_store import InvalidKeyError, LocalImageStore, StoreUnavailableError, open_image_store
from models.s3_store import S3ImageStore, parse_s3_url
from models.settings import Settings
from tests.s3_server import S3Server, aws_env, bucket_keys, client, free_port


@pytest.fixture
def bucket(s3_server, monkeypatch) -> str:
    """A new bucket, with the standard AWS variables set for boto3's credential chain."""
    for name, value in aws_env().items():
        monkeypatch.setenv(name, value)
    name = f"farm-{uuid.uuid4().hex[:10]}"
    client(s3_server.url).create_bucket(Bucket=name)
    return name


def test_settings_choose_the_store_from_one_url(tmp_path, s3_server, bucket):
    s3 = open_image_store(Settings(object_store=f"s3://{bucket}/renders/", s3_endpoint_url=s3_server.url))
    assert isinstance(s3, S3ImageStore) and (s3.bucket, s3.prefix) == (bucket, "renders/")
    local = open_image_store(Settings(object_store=f"file://{tmp_path}/objects"))
    assert isinstance(local, LocalImageStore) and local.root == (tmp_path / "objects").resolve()
    assert open_image_store(Settings(object_store=str(tmp_path / "plain"))).root == (tmp_path / "plain").resolve()
    assert open_image_store(Settings(data_dir=tmp_path)).root == (tmp_path / "objects").resolve()
    with pytest.raises(ValueError, match="SDFARM_OBJECT_STORE must be s3://bucket/prefix"):
        Settings(object_store="gs://bucket/x")
    with pytest.raises(ValueError, match="not an s3://bucket/prefix URL"):
        parse_s3_url("s3:///nobucket")


def test_put_read_list_delete_under_the_prefix(s3_server, bucket):
    store = S3ImageStore(bucket, "farm-a/", s3_server.url)
    store.check()
    store.put("jobs/00000001/000000-abcdef12.png", b"png bytes")
    store.put("jobs/00000001/000000-abcdef12.thumb.webp", b"webp")
    store.put("jobs/00000001/000001-99999999.png", b"other attempt")
    # A PUT retried with the same bytes is harmless: one object, same content.
    store.put("jobs/00000001/000000-abcdef12.png", b"png bytes")
    assert store.read("jobs/00000001/000000-abcdef12.png") == b"png bytes"
    stream, size = store.open("jobs/00000001/000000-abcdef12.thumb.webp")
    assert (stream.read(), size) == (b"webp", 4)
    assert set(store.keys("jobs/00000001/000000-abcdef12")) == {
        "jobs/00000001/000000-abcdef12.png",
        "jobs/00000001/000000-abcdef12.thumb.webp",
    }
    # Everything lives under the prefix; the probe of check() is gone.
    assert bucket_keys(client(s3_server.url), bucket) == {f"farm-a/{k}" for k in store.keys()}
    assert len(list(store.keys())) == 3
    store.delete("jobs/00000001/000000-abcdef12.png")
    store.delete("jobs/00000001/000000-abcdef12.png")  # absent: still fine
    with pytest.raises(FileNotFoundError):
        store.read("jobs/00000001/000000-abcdef12.png")
    with pytest.raises(InvalidKeyError):
        store.put("../escape.png", b"x")


def test_each_put_carries_the_sha256_of_its_body(s3_server, bucket):
    store = S3ImageStore(bucket, "", s3_server.url)
    sent = []
    store.client.meta.events.register("before-send.s3.PutObject", lambda request, **_: sent.append(request.headers))
    store.put("jobs/00000002/000000-00000000.png", b"abc")
    # base64 of sha256("abc"): the store recomputes it and refuses a body damaged in transit.
    assert sent[0]["x-amz-checksum-sha256"] == b"ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="


def test_presigned_url_serves_the_object_with_its_type_and_name(tmp_path, s3_server, bucket):
    store = S3ImageStore(bucket, "p/", s3_server.url)
    store.put("jobs/00000003/000000-00000000.png", b"\x89PNG...")
    url = store.presigned_url("jobs/00000003/000000-00000000.png", 60, "image/png", "sdfarm-3-0.png")
    answer = requests.get(url, timeout=10)
    assert answer.status_code == 200 and answer.content == b"\x89PNG..."
    assert answer.headers["Content-Type"] == "image/png"
    assert 'filename="sdfarm-3-0.png"' in answer.headers["Content-Disposition"]
    assert store.redirect_origin() == s3_server.url
    # The directory store has no URL of its own: the API streams its files.
    assert LocalImageStore(tmp_path).presigned_url("inputs/x.png", 60, "image/png", None) is None


def test_check_names_a_missing_bucket_and_an_unreachable_endpoint(s3_server, bucket):
    with pytest.raises(StoreUnavailableError, match="bucket 'no-such-bucket' does not exist at http://127.0.0.1"):
        S3ImageStore("no-such-bucket", "", s3_server.url).check()
    closed = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(StoreUnavailableError, match="cannot reach s3://.* check SDFARM_S3_ENDPOINT_URL"):
        S3ImageStore(bucket, "", closed).check()


def test_check_names_refused_credentials(tmp_path, monkeypatch):
    # A server that checks credentials (IAM) after the three calls that make a user and its key.
    server = S3Server(tmp_path / "s3.log", auth_after=4).start()
    try:
        iam_kwargs = dict(endpoint_url=server.url, region_name="us-east-1")
        import boto3

        iam = boto3.client("iam", aws_access_key_id="setup", aws_secret_access_key="setup", **iam_kwargs)
        iam.create_user(UserName="farm")
        key = iam.create_access_key(UserName="farm")["AccessKey"]
        policy = '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}'
        iam.put_user_policy(UserName="farm", PolicyName="s3", PolicyDocument=policy)
        client(server.url, key["AccessKeyId"], key["SecretAccessKey"]).create_bucket(Bucket="farm")
        for name, value in aws_env(key["AccessKeyId"], key["SecretAccessKey"]).items():
            monkeypatch.setenv(name, value)
        S3ImageStore("farm", "", server.url).check()  # the right key works
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
        with pytest.raises(StoreUnavailableError, match="refused these credentials for bucket 'farm'"):
            S3ImageStore("farm", "", server.url).check()
    finally:
        server.stop()


def test_directory_store_lists_by_prefix_and_checks(tmp_path):
    store = LocalImageStore(tmp_path / "objects")
    store.check()
    for key in ("jobs/00000001/000000-aaaaaaaa.png", "jobs/00000001/000000-aaaaaaaa.thumb.webp", "inputs/x.png"):
        store.put(key, b"x")
    assert set(store.keys("jobs/00000001/000000-aaaa")) == {
        "jobs/00000001/000000-aaaaaaaa.png",
        "jobs/00000001/000000-aaaaaaaa.thumb.webp",
    }
    assert list(store.keys("jobs/00000009/")) == []
    assert set(store.keys()) == {
        "jobs/00000001/000000-aaaaaaaa.png",
        "jobs/00000001/000000-aaaaaaaa.thumb.webp",
        "inputs/x.png",
    }
    handle, size = store.open("inputs/x.png")
    with handle:
        assert (handle.read(), size) == (b"x", 1)
