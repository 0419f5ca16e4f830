"""Where deliveries may go: the rules on their own, without a server."""

from __future__ import annotations

import ipaddress

import pytest

from intake_api.webhooks.targets import (
    Policy,
    TargetRefused,
    Unresolvable,
    is_public,
    origin_of,
    parse,
    resolve,
)


@pytest.mark.parametrize("address", [
    "127.0.0.1", "10.0.0.8", "172.16.5.4", "192.168.1.1", "169.254.169.254", "100.64.0.1",
    "0.0.0.0", "224.0.0.1", "::1", "fe80::1", "fc00::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
])
def test_private_loopback_link_local_and_reserved_addresses_are_not_public(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", [
    # NAT64 (RFC 6052 well-known prefix, RFC 8215 local-use prefix) to loopback and private.
    "64:ff9b::7f00:1", "64:ff9b::a00:1", "64:ff9b::c0a8:101", "64:ff9b:1::7f00:1",
    # 6to4 relays at loopback, private and link-local addresses.
    "2002:7f00:1::", "2002:a00:1::1", "2002:a9fe:a9fe::1",
    # Teredo, whatever its server and client, and IPv4-compatible and site-local forms.
    "2001:0:4136:e378:8000:63bf:3fff:fdd2", "2001:0:7f00:1::", "::7f00:1", "fec0::1",
])
def test_ipv6_forms_embedding_ipv4_are_judged_by_the_ipv4_they_reach(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "203.119.13.5", "2001:4860:4860::8888",
                                     "64:ff9b::808:808", "2002:808:808::1", "::ffff:8.8.8.8"])
def test_internet_addresses_are_public(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("url", [
    "http://hooks.example.id/", "ftp://hooks.example.id/", "https://", "https://u:p@x.id/",
    "https://x.id/#frag", "https://x.id/ a", "https://localhost/", "https://api.localhost/",
    "https://x.id:99999/", "https://x.id/" + "a" * 2000,
])
def test_refused_urls(url: str) -> None:
    with pytest.raises(TargetRefused):
        parse(url, Policy())


async def test_addresses_are_checked_after_resolution() -> None:
    strict, open_ = Policy(), Policy(allow_http=True, allow_private=True)
    with pytest.raises(TargetRefused, match="private"):
        await resolve(parse("https://10.1.2.3/hooks", strict), strict)
    with pytest.raises(TargetRefused, match="private"):
        await resolve(parse("https://[::ffff:127.0.0.1]/", strict), strict)
    for url in ("https://[64:ff9b::7f00:1]/", "https://[2002:7f00:1::]/"):
        with pytest.raises(TargetRefused, match="private"):
            await resolve(parse(url, strict), strict)
    assert await resolve(parse("http://127.0.0.1:8080/", open_), open_) == [
        ipaddress.ip_address("127.0.0.1")]
    assert await resolve(parse("http://localhost:8080/", open_), open_)
    with pytest.raises(Unresolvable):
        await resolve(parse("https://hooks.invalid/", strict), strict)


@pytest.mark.parametrize(("spellings", "origin"), [
    (["https://hooks.example.id", "https://hooks.example.id:443/a", "https://hooks.example.id./b",
      "https://HOOKS.Example.ID.:443?x=1", "HTTPS://hooks.example.id/"],
     "https://hooks.example.id:443"),
    (["http://hooks.example.id", "http://hooks.example.id:80/", "http://Hooks.Example.Id."],
     "http://hooks.example.id:80"),
    (["https://bücher.example/hook", "https://BÜCHER.example.:443",
      "https://xn--bcher-kva.example/x"], "https://xn--bcher-kva.example:443"),
    (["https://[2001:db8::1]/a", "https://[2001:DB8::1]:443/b"], "https://[2001:db8::1]:443"),
])
def test_every_spelling_of_one_server_is_one_origin(spellings: list[str], origin: str) -> None:
    assert {origin_of(url) for url in spellings} == {origin}


def test_another_port_scheme_or_host_is_another_origin() -> None:
    urls = ["https://hooks.example.id", "https://hooks.example.id:8443", "http://hooks.example.id",
            "https://hooks.example.id.example", "https://api.hooks.example.id"]
    assert len({origin_of(url) for url in urls}) == len(urls)
