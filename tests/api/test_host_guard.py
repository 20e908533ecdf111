"""DNS-rebinding guard: with auth off only loopback Hosts and SDFARM_ALLOWED_HOSTS are answered."""

from __future__ import annotations

import pytest

from api.auth import create_key
from api.host_guard import host_allowed, host_name

SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

URLS = ("/api/v1/jobs", "/healthz", "/", "/api/v1/openapi.json", "/no-such-page")


@SQLITE
@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "192.168.1.10:8000", "0.0.0.0", "[fe80::1]"])
def test_auth_off_refuses_other_hosts(client, host):
    for url in URLS:
        response = client.get(url, headers={"Host": host})
        assert response.status_code == 400, url
        if url.startswith("/api/"):
            error = response.json["error"]
            assert error["fields"][0]["field"] == "Host" and "SDFARM_ALLOWED_HOSTS" in error["message"]
    submitted = client.post("/api/v1/jobs", json={"prompts": ["a"]}, headers={"Host": host})
    assert submitted.status_code == 400
    assert client.get("/api/v1/jobs").json["jobs"] == []  # nothing was submitted


@SQLITE
@pytest.mark.parametrize(
    "host", ["localhost", "LOCALHOST:8000", "localhost.", "127.0.0.1", "127.8.9.10:8000", "[::1]:8000", "::1"]
)
def test_auth_off_answers_loopback_hosts(client, host):
    for url in URLS[:4]:
        assert client.get(url, headers={"Host": host}).status_code == 200, url


@SQLITE
def test_allowed_hosts_setting(app, client):
    app.extensions["sdfarm"].settings.allowed_hosts = "api, .farm.internal ,Render.Example."
    for host in ("api:8000", "farm.internal", "gpu.farm.internal:8000", "render.example"):
        assert client.get("/api/v1/jobs", headers={"Host": host}).status_code == 200, host
    for host in ("apix", "evilfarm.internal", "render.example.evil"):
        assert client.get("/api/v1/jobs", headers={"Host": host}).status_code == 400, host
    app.extensions["sdfarm"].settings.allowed_hosts = "*"
    assert client.get("/api/v1/jobs", headers={"Host": "anything.example"}).status_code == 200


@SQLITE
def test_auth_on_answers_any_host(app, client):
    app.extensions["sdfarm"].settings.auth = "on"
    with app.extensions["sdfarm"].sessions() as session:
        secret = create_key(session, "alice")[1]
    headers = {"Host": "farm.example.com", "Authorization": f"Bearer {secret}"}
    assert client.get("/api/v1/jobs", headers=headers).status_code == 200
    assert client.get("/api/v1/jobs", headers={"Host": "farm.example.com"}).status_code == 401


def test_host_name_parsing():
    assert host_name("LocalHost:8000") == "localhost"
    assert host_name("[::1]:8000") == "::1"
    assert host_name("::1") == "::1"
    assert host_name("example.com.") == "example.com"
    assert host_allowed("127.255.0.1", []) and not host_allowed("128.0.0.1", [])
    assert host_allowed("a.b.example", [".example"]) and not host_allowed("bexample", [".example"])
