"""The current SDK (alibabacloud_kms20160120 on alibabacloud_tea_openapi) against the emulator,
unmodified, with `signature_algorithm='v2'` (V1 HMAC-SHA1 signing), as in kms-api.md 9.2."""

from __future__ import annotations

import pytest
from alibabacloud_kms20160120 import models as kms_models
from alibabacloud_kms20160120.client import Client
from alibabacloud_tea_openapi import models as open_api_models
from alibabacloud_tea_openapi.exceptions import ClientException

from conftest import REGION, STS_TOKEN, Credentials, Emulator


def make_client(emulator: Emulator, creds: Credentials) -> Client:
    config = open_api_models.Config(
        access_key_id=creds.access_key_id,
        access_key_secret=creds.access_key_secret,
        security_token=creds.security_token,
        region_id=REGION,
        endpoint=emulator.host,
        protocol="http",
        signature_algorithm="v2",
        connect_timeout=5000,
        read_timeout=10000,
    )
    return Client(config)


def check_success(response) -> None:
    """Status 200, a RequestId, no `Code` in the body."""
    assert response.status_code == 200
    body = response.body.to_map()
    assert body.get("RequestId"), body
    assert "Code" not in body, f"success body carries Code: {body}"


class Kms:
    def __init__(self, client: Client):
        self.client = client

    def create_key(self, description: str) -> str:
        response = self.client.create_key(kms_models.CreateKeyRequest(description=description))
        check_success(response)
        metadata = response.body.key_metadata
        assert metadata.key_state == "Enabled"
        assert metadata.description == description
        return metadata.key_id

    def describe_key(self, key_id: str) -> kms_models.DescribeKeyResponseBodyKeyMetadata:
        response = self.client.describe_key(kms_models.DescribeKeyRequest(key_id=key_id))
        check_success(response)
        return response.body.key_metadata

    def create_alias(self, alias: str, key_id: str) -> None:
        request = kms_models.CreateAliasRequest(alias_name=alias, key_id=key_id)
        response = self.client.create_alias(request)
        check_success(response)
        assert set(response.body.to_map()) == {"RequestId"}

    def list_aliases(self, page: int, size: int) -> kms_models.ListAliasesResponseBody:
        request = kms_models.ListAliasesRequest(page_number=page, page_size=size)
        response = self.client.list_aliases(request)
        check_success(response)
        return response.body


@pytest.fixture
def kms(emulator: Emulator, credentials: Credentials) -> Kms:
    return Kms(make_client(emulator, credentials))


def test_alias_lifecycle(kms: Kms, new_alias) -> None:
    """CreateKey, CreateAlias, DescribeKey by alias, UpdateAlias, DeleteAlias."""
    first = kms.create_key("tea sdk first key")
    second = kms.create_key("tea sdk second key")
    assert first != second
    alias = new_alias()

    kms.create_alias(alias, first)
    by_alias = kms.describe_key(alias)
    assert by_alias.key_id == first
    assert by_alias.arn.endswith(f":key/{first}"), by_alias.arn

    request = kms_models.UpdateAliasRequest(alias_name=alias, key_id=second)
    check_success(kms.client.update_alias(request))
    assert kms.describe_key(alias).key_id == second

    check_success(kms.client.delete_alias(kms_models.DeleteAliasRequest(alias_name=alias)))
    with pytest.raises(ClientException) as raised:
        kms.describe_key(alias)
    assert raised.value.code == "Forbidden.AliasNotFound"
    assert raised.value.status_code == 404
    assert raised.value.request_id
    # Deleting the alias leaves both keys alone.
    assert kms.describe_key(first).key_state == "Enabled"
    assert kms.describe_key(second).key_state == "Enabled"


def test_list_aliases_pages(kms: Kms, new_alias) -> None:
    """25 aliases read back 10 per page: each seen exactly once, TotalCount right."""
    key = kms.create_key("tea sdk paging")
    created = [new_alias() for _ in range(25)]
    for alias in created:
        kms.create_alias(alias, key)

    seen: list[str] = []
    page_sizes = []
    page = 1
    while True:
        body = kms.list_aliases(page, 10)
        assert body.total_count == len(created)
        assert (body.page_number, body.page_size) == (page, 10)
        page_sizes.append(len(body.aliases.alias))
        for item in body.aliases.alias:
            assert item.key_id == key
            assert item.alias_arn.endswith(f":{item.alias_name}"), item.alias_arn
            seen.append(item.alias_name)
        if page * 10 >= body.total_count:
            break
        page += 1

    assert page_sizes == [10, 10, 5]
    assert sorted(seen) == sorted(created), "every alias exactly once"
    assert len(set(seen)) == len(seen)
    # Past the last page: an empty list, the same total.
    body = kms.list_aliases(4, 10)
    assert body.aliases.alias == [] and body.total_count == len(created)


def test_duplicate_create_alias(kms: Kms, new_alias) -> None:
    """A second CreateAlias of a taken name is AliasAlreadyExists / HTTP 400 and changes nothing."""
    first = kms.create_key("tea sdk duplicate first")
    second = kms.create_key("tea sdk duplicate second")
    alias = new_alias()
    kms.create_alias(alias, first)

    with pytest.raises(ClientException) as raised:
        kms.create_alias(alias, second)
    assert raised.value.code == "AliasAlreadyExists"
    assert raised.value.status_code == 400
    assert raised.value.request_id
    assert kms.describe_key(alias).key_id == first


def test_wrong_secret_is_signature_mismatch(emulator: Emulator, credentials: Credentials) -> None:
    """tea-openapi does not compare string-to-sign like the legacy SDK; it surfaces the
    gateway's SignatureDoesNotMatch with the server's string-to-sign in the message."""
    kms = Kms(make_client(emulator, credentials.with_secret("not-the-secret")))
    with pytest.raises(ClientException) as raised:
        kms.list_aliases(1, 10)
    assert raised.value.code == "SignatureDoesNotMatch"
    assert raised.value.status_code == 400
    assert "server string to sign is:POST&%2F&" in raised.value.message


@pytest.mark.parametrize("token", [None, STS_TOKEN.security_token + "x"], ids=["none", "wrong"])
def test_sts_key_needs_its_token(emulator: Emulator, token) -> None:
    """STS credentials are only good with their own token: none or another one is refused."""
    kms = Kms(make_client(emulator, STS_TOKEN.with_token(token)))
    with pytest.raises(ClientException) as raised:
        kms.list_aliases(1, 10)
    assert 400 <= raised.value.status_code < 500
    assert raised.value.code not in ("", None, "SignatureDoesNotMatch")
