"""The legacy SDK (aliyun-python-sdk-core + aliyun-python-sdk-kms, V1 signing) against the
emulator, unmodified, as in kms-api.md section 9.1: per-request endpoint and plain HTTP."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aliyunsdkcore.acs_exception.exceptions import ServerException
from aliyunsdkcore.auth.credentials import AccessKeyCredential, StsTokenCredential
from aliyunsdkcore.client import AcsClient
from aliyunsdkcore.request import RpcRequest
from aliyunsdkkms.request.v20160120.CreateAliasRequest import CreateAliasRequest
from aliyunsdkkms.request.v20160120.CreateKeyRequest import CreateKeyRequest
from aliyunsdkkms.request.v20160120.DeleteAliasRequest import DeleteAliasRequest
from aliyunsdkkms.request.v20160120.DescribeKeyRequest import DescribeKeyRequest
from aliyunsdkkms.request.v20160120.ListAliasesRequest import ListAliasesRequest
from aliyunsdkkms.request.v20160120.UpdateAliasRequest import UpdateAliasRequest

from conftest import REGION, STS_TOKEN, Credentials, Emulator


class Kms:
    """An `AcsClient` aimed at the emulator, without retries."""

    def __init__(self, emulator: Emulator, creds: Credentials):
        if creds.security_token is None:
            credential = AccessKeyCredential(creds.access_key_id, creds.access_key_secret)
        else:
            credential = StsTokenCredential(
                creds.access_key_id, creds.access_key_secret, creds.security_token
            )
        self.host = emulator.host
        self.client = AcsClient(
            region_id=REGION,
            credential=credential,
            auto_retry=False,
            connect_timeout=5,
            timeout=10,
        )

    def call(self, request: RpcRequest, **params: Any) -> dict:
        """Sets `set_<Name>(value)` for each parameter, sends, returns the decoded JSON body."""
        request.set_endpoint(self.host)
        request.set_protocol_type("http")  # the KMS request classes default to https
        for name, value in params.items():
            getattr(request, f"set_{name}")(value)
        body = self.client.do_action_with_exception(request)
        decoded = json.loads(body)
        assert "Code" not in decoded, f"success body carries Code: {decoded}"
        assert decoded.get("RequestId"), f"success body without RequestId: {decoded}"
        return decoded

    def create_key(self, description: str) -> str:
        body = self.call(CreateKeyRequest(), Description=description)
        metadata = body["KeyMetadata"]
        assert metadata["KeyState"] == "Enabled", metadata
        assert metadata["Description"] == description, metadata
        return metadata["KeyId"]

    def describe_key(self, key_id: str) -> dict:
        return self.call(DescribeKeyRequest(), KeyId=key_id)["KeyMetadata"]


@pytest.fixture
def kms(emulator: Emulator, credentials: Credentials) -> Kms:
    return Kms(emulator, credentials)


def test_alias_lifecycle(kms: Kms, new_alias) -> None:
    """CreateKey, CreateAlias, DescribeKey by alias, UpdateAlias, DeleteAlias."""
    first = kms.create_key("legacy sdk first key")
    second = kms.create_key("legacy sdk second key")
    assert first != second
    alias = new_alias()

    assert set(kms.call(CreateAliasRequest(), AliasName=alias, KeyId=first)) == {"RequestId"}
    by_alias = kms.describe_key(alias)
    assert by_alias["KeyId"] == first
    assert by_alias["Arn"].endswith(f":key/{first}"), by_alias

    kms.call(UpdateAliasRequest(), AliasName=alias, KeyId=second)
    assert kms.describe_key(alias)["KeyId"] == second

    kms.call(DeleteAliasRequest(), AliasName=alias)
    with pytest.raises(ServerException) as raised:
        kms.describe_key(alias)
    assert raised.value.get_error_code() == "Forbidden.AliasNotFound"
    assert raised.value.get_http_status() == 404
    assert raised.value.get_request_id()
    # Deleting the alias leaves both keys alone.
    assert kms.describe_key(first)["KeyState"] == "Enabled"
    assert kms.describe_key(second)["KeyState"] == "Enabled"


def test_list_aliases_pages(kms: Kms, new_alias) -> None:
    """25 aliases read back 10 per page: each seen exactly once, TotalCount right."""
    key = kms.create_key("legacy sdk paging")
    created = [new_alias() for _ in range(25)]
    for alias in created:
        kms.call(CreateAliasRequest(), AliasName=alias, KeyId=key)

    seen: list[str] = []
    page_sizes = []
    page = 1
    while True:
        body = kms.call(ListAliasesRequest(), PageNumber=page, PageSize=10)
        assert body["TotalCount"] == len(created), body
        assert body["PageNumber"] == page and body["PageSize"] == 10, body
        items = body["Aliases"]["Alias"]
        page_sizes.append(len(items))
        for item in items:
            assert item["KeyId"] == key, item
            assert item["AliasArn"].endswith(f":{item['AliasName']}"), item
            seen.append(item["AliasName"])
        if page * 10 >= body["TotalCount"]:
            break
        page += 1

    assert page_sizes == [10, 10, 5]
    assert sorted(seen) == sorted(created), "every alias exactly once"
    assert len(set(seen)) == len(seen)
    # Past the last page: an empty list, the same total.
    body = kms.call(ListAliasesRequest(), PageNumber=4, PageSize=10)
    assert body["Aliases"]["Alias"] == [] and body["TotalCount"] == len(created), body


def test_duplicate_create_alias(kms: Kms, new_alias) -> None:
    """A second CreateAlias of a taken name is AliasAlreadyExists / HTTP 400 and changes nothing."""
    first = kms.create_key("legacy sdk duplicate first")
    second = kms.create_key("legacy sdk duplicate second")
    alias = new_alias()
    kms.call(CreateAliasRequest(), AliasName=alias, KeyId=first)

    with pytest.raises(ServerException) as raised:
        kms.call(CreateAliasRequest(), AliasName=alias, KeyId=second)
    assert raised.value.get_error_code() == "AliasAlreadyExists"
    assert raised.value.get_http_status() == 400
    assert raised.value.get_request_id()
    assert kms.describe_key(alias)["KeyId"] == first


def test_wrong_secret_is_reported_as_invalid_secret(
    emulator: Emulator, credentials: Credentials
) -> None:
    """The emulator answers SignatureDoesNotMatch with `server string to sign is:<sts>`; the SDK
    finds its own string-to-sign there and reports `InvalidAccessKeySecret` instead."""
    kms = Kms(emulator, credentials.with_secret("not-the-secret"))
    with pytest.raises(ServerException) as raised:
        kms.call(ListAliasesRequest())
    assert raised.value.get_error_code() == "InvalidAccessKeySecret", raised.value
    assert raised.value.get_http_status() == 400
    assert raised.value.get_error_msg() == (
        "The AccessKeySecret is incorrect. Please check your AccessKeyId and AccessKeySecret."
    )


@pytest.mark.parametrize("token", [None, STS_TOKEN.security_token + "x"], ids=["none", "wrong"])
def test_sts_key_needs_its_token(emulator: Emulator, token) -> None:
    """STS credentials are only good with their own token: none or another one is refused."""
    kms = Kms(emulator, STS_TOKEN.with_token(token))
    with pytest.raises(ServerException) as raised:
        kms.call(ListAliasesRequest())
    assert 400 <= raised.value.get_http_status() < 500, raised.value
    assert raised.value.get_error_code() not in ("", None, "SignatureDoesNotMatch")
