"""Authentication with real credentials: API keys, and JWTs signed by a test key pair whose
JWKS a real HTTP server on 127.0.0.1 serves; role checks on admin data; the `me` query."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from flask import Flask
from flask.testing import FlaskClient
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from federation.cli import main
from federation.gateway import create_app
from federation.gateway.auth import Authenticator, hash_api_key, issue_api_key
from federation.gateway.auth_config import AuthConfig
from federation.gateway.errors import AuthenticationFailed
from federation.settings import Settings, SettingsError
from tests.gateway.access import KEYS, NO_RATE_LIMIT, auth_section, headers
from tests.gateway.conftest import graphql, only_error

ISSUER = "https://login.test.example/realms/biofed"
AUDIENCE = "biofed-api"
ME = "{ me { subject authenticated roles adminOf approvedFor via } }"

# --- a provider: key pairs, and a JWKS served over real HTTP -------------------------------


class Provider:
    """An OpenID provider's signing side: key pairs by kid, and the JWKS it publishes."""

    def __init__(self) -> None:
        self.private: dict[str, Any] = {}
        self.published: list[dict[str, Any]] = []
        self.fetches = 0
        self.down = False

    def add_rsa(self, kid: str, *, publish: bool = True) -> None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.private[kid] = key
        if publish:
            self.publish(kid)

    def add_ec(self, kid: str) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        self.private[kid] = key
        self.publish(kid)

    def publish(self, kid: str) -> None:
        key = self.private[kid]
        if isinstance(key, rsa.RSAPrivateKey):
            jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
            jwk["alg"] = "RS256"
        else:
            jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
            jwk["alg"] = "ES256"
        self.published.append({**jwk, "kid": kid, "use": "sig"})

    def token(
        self,
        kid: str = "k1",
        *,
        signer: str | None = None,
        lifetime: float = 300,
        **claims: Any,
    ) -> str:
        """A token with `kid` in its header, signed by `signer`'s key (default: kid's)."""
        now = int(time.time())
        payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now}
        payload["exp"] = int(now + lifetime)
        payload.update(claims)
        payload = {k: v for k, v in payload.items() if v is not None}
        key = self.private[signer or kid]
        algorithm = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
        return jwt.encode(payload, key, algorithm=algorithm, headers={"kid": kid})


@pytest.fixture(scope="module")
def provider() -> Iterator[tuple[Provider, str]]:
    """The provider and the URL of its JWKS, served from a thread on 127.0.0.1."""
    state = Provider()
    state.add_rsa("k1")
    state.add_ec("e1")
    state.add_rsa("attacker", publish=False)

    class JwksHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.fetches += 1
            if state.down:
                self.send_error(503)
                return
            body = json.dumps({"keys": state.published}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep the test output quiet

    server = ThreadingHTTPServer(("127.0.0.1", 0), JwksHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}/realms/biobank/certs"
    server.shutdown()
    server.server_close()
    thread.join()


def oidc_section(jwks_url: str, **extra: Any) -> dict[str, Any]:
    return {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "jwks_url": jwks_url,
        "jwks_refetch_seconds": 0,
        "claims": {"roles": "realm_access.roles"},
        **extra,
    }


def oidc_app(settings: Settings, jwks_url: str, **extra: Any) -> Flask:
    auth = auth_section(oidc=oidc_section(jwks_url, **extra))
    return create_app(
        {"settings": settings.with_overrides(auth=auth, limits=NO_RATE_LIMIT), "TESTING": True}
    )


@pytest.fixture
def oidc_client(synced_settings: Settings, provider: tuple[Provider, str]) -> Iterator[FlaskClient]:
    app = oidc_app(synced_settings, provider[1])
    yield app.test_client()
    runtime = app.extensions["biofed"]
    if "backend" in vars(runtime):
        runtime.backend.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def me(client: FlaskClient, request_headers: dict[str, str] | None = None) -> dict[str, Any]:
    body = graphql(client, ME, headers=request_headers)
    assert "errors" not in body, body
    result = body["data"]["me"]
    assert isinstance(result, dict)
    return result


def refused(
    client: FlaskClient, request_headers: dict[str, str], error: str = "invalid_token"
) -> str:
    """Assert a 401 with the Bearer challenge; return the message."""
    response = client.post("/graphql", json={"query": ME}, headers=request_headers)
    assert response.status_code == 401, response.get_data(as_text=True)
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ") and f'error="{error}"' in challenge
    body = response.get_json()
    assert "data" not in body  # never answered, not even as anonymous
    (failure,) = body["errors"]
    assert failure["extensions"]["code"] == "UNAUTHENTICATED"
    message = failure["message"]
    assert isinstance(message, str)
    return message


# --- anonymous and API keys ---------------------------------------------------------------


def test_no_credentials_is_anonymous(client: FlaskClient) -> None:
    assert me(client) == {
        "subject": "anonymous",
        "authenticated": False,
        "roles": ["ANONYMOUS"],
        "adminOf": [],
        "approvedFor": [],
        "via": "none",
    }


@pytest.mark.parametrize(
    ("name", "roles", "admin_of", "approved_for"),
    [
        ("operator", ["REGISTERED", "NETWORK_OPERATOR"], [], []),
        ("bb1_admin", ["REGISTERED", "BIOBANK_ADMIN"], ["bb1"], []),
        ("bb1_approved", ["REGISTERED", "APPROVED"], [], ["bb1"]),
        ("researcher", ["REGISTERED"], [], []),
    ],
)
def test_api_key_per_role(
    client: FlaskClient, name: str, roles: list[str], admin_of: list[str], approved_for: list[str]
) -> None:
    assert me(client, headers(name)) == {
        "subject": KEYS[name].entry["subject"],
        "authenticated": True,
        "roles": roles,
        "adminOf": admin_of,
        "approvedFor": approved_for,
        "via": "api_key",
    }


def test_api_key_in_x_api_key_header(client: FlaskClient) -> None:
    assert me(client, {"X-API-Key": KEYS["operator"].key})["via"] == "api_key"


def test_a_wrong_api_key_is_refused_and_never_echoed(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    real = KEYS["operator"].key
    forged = real[:-4] + ("AAAA" if not real.endswith("AAAA") else "BBBB")
    unknown = issue_api_key("nobody").key  # well formed, never configured
    with caplog.at_level(logging.DEBUG):
        for key in (forged, unknown, "bfk_zz_not-a-key"):
            message = refused(client, bearer(key))
            assert key not in message and "API key" in message
            assert refused(client, {"X-API-Key": key}) == message
    assert not any(forged in r.getMessage() or unknown in r.getMessage() for r in caplog.records)


def test_malformed_authorization_is_refused(client: FlaskClient) -> None:
    refused(client, {"Authorization": "Basic dXNlcjpwYXNz"}, "invalid_request")
    refused(client, {"Authorization": "Bearer"}, "invalid_request")
    both = {**headers("operator"), "X-API-Key": KEYS["operator"].key}
    assert "not both" in refused(client, both, "invalid_request")


def test_bearer_jwt_without_oidc_configured_is_refused(
    client: FlaskClient, provider: tuple[Provider, str]
) -> None:
    assert "API keys only" in refused(client, bearer(provider[0].token()))


def test_stored_entry_holds_only_a_salted_hash() -> None:
    first, second = issue_api_key("same"), issue_api_key("same")
    for issued in (first, second):
        assert issued.key not in yaml.safe_dump(issued.entry)
        scheme, salt, digest = issued.entry["hash"].split(":")
        assert scheme == "sha256"
        assert hash_api_key(issued.key, bytes.fromhex(salt)).hex() == digest
        assert issued.key not in repr(issued)
    assert first.entry["hash"].split(":")[1] != second.entry["hash"].split(":")[1]


def test_cli_issues_a_key_that_signs_in(synced_settings: Settings) -> None:
    result = CliRunner().invoke(
        main,
        ["apikey", "create", "--subject", "bob@bb2.example", "--admin-of", "bb2"],
    )
    assert result.exit_code == 0, result.output
    key, *entry_lines = result.stdout.strip().splitlines()
    assert key.startswith("bfk_")
    entries = yaml.safe_load("\n".join(entry_lines))
    assert entries[0]["subject"] == "bob@bb2.example" and key not in result.stdout[len(key) :]
    assert "shown only now" in result.stderr
    settings = synced_settings.with_overrides(auth={"api_keys": entries}, limits=NO_RATE_LIMIT)
    app = create_app({"settings": settings, "TESTING": True})
    signed_in = me(app.test_client(), bearer(key))
    assert (signed_in["subject"], signed_in["adminOf"]) == ("bob@bb2.example", ["bb2"])


# --- OIDC bearer tokens -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("claims", "roles", "admin_of", "approved_for"),
    [
        ({}, ["REGISTERED"], [], []),
        ({"biofed_operator": True}, ["REGISTERED", "NETWORK_OPERATOR"], [], []),
        ({"biofed_operator": "yes"}, ["REGISTERED"], [], []),  # only JSON true counts
        ({"biofed_admin_of": ["bb1"]}, ["REGISTERED", "BIOBANK_ADMIN"], ["bb1"], []),
        ({"biofed_approved_for": "bb1 bb2"}, ["REGISTERED", "APPROVED"], [], ["bb1", "bb2"]),
        (
            {
                "realm_access": {
                    "roles": ["biofed:admin:bb2", "biofed:approved:bb1", "wiki:admin:bb1"]
                }
            },
            ["REGISTERED", "APPROVED", "BIOBANK_ADMIN"],
            ["bb2"],
            ["bb1"],
        ),
        (
            {"realm_access": {"roles": ["biofed:operator"]}},
            ["REGISTERED", "NETWORK_OPERATOR"],
            [],
            [],
        ),
    ],
)
def test_token_per_role(
    oidc_client: FlaskClient,
    provider: tuple[Provider, str],
    claims: dict[str, Any],
    roles: list[str],
    admin_of: list[str],
    approved_for: list[str],
) -> None:
    token = provider[0].token(**claims)
    assert me(oidc_client, bearer(token)) == {
        "subject": "alice",
        "authenticated": True,
        "roles": roles,
        "adminOf": admin_of,
        "approvedFor": approved_for,
        "via": "oidc",
    }


def test_es256_token(oidc_client: FlaskClient, provider: tuple[Provider, str]) -> None:
    assert me(oidc_client, bearer(provider[0].token("e1")))["via"] == "oidc"


def test_api_keys_still_work_beside_oidc(oidc_client: FlaskClient) -> None:
    assert me(oidc_client, headers("bb1_admin"))["adminOf"] == ["bb1"]


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: p.token(lifetime=-120), "expired"),
        (lambda p: p.token(nbf=int(time.time()) + 600), "not valid yet"),
        (lambda p: p.token(signer="attacker"), "signature"),  # k1's kid, another key
        (lambda p: p.token("attacker"), "key the provider does not list"),
        (lambda p: p.token(aud="another-api"), "aud"),
        (lambda p: p.token(iss="https://evil.example"), "iss"),
        (lambda p: p.token(exp=None), "exp"),
        (lambda p: p.token(sub=""), "sub"),
        (lambda p: p.token(biofed_admin_of={"bb1": True}), "biobank ids"),
        (lambda p: p.token()[:-6] + "AAAAAA", "signature"),
        (lambda p: "not.a.jwt", "not a JWT"),
    ],
)
def test_bad_tokens_are_refused_never_anonymous(
    oidc_client: FlaskClient, provider: tuple[Provider, str], make: Any, reason: str
) -> None:
    token = make(provider[0])
    message = refused(oidc_client, bearer(token))
    assert reason in message and token not in message


def test_symmetric_and_unsigned_tokens_are_refused(
    oidc_client: FlaskClient, provider: tuple[Provider, str]
) -> None:
    jwk = next(k for k in provider[0].published if k["kid"] == "k1")
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "exp": int(time.time()) + 60}
    # The classic confusion: HMAC "signed" with the provider's public key material (PyJWT
    # refuses to make such a token, so it is put together by hand).
    forged = hand_made(claims, "HS256", json.dumps(jwk).encode())
    assert "not accepted" in refused(oidc_client, bearer(forged))
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": "k1"})
    assert "not accepted" in refused(oidc_client, bearer(unsigned))


def hand_made(claims: dict[str, Any], algorithm: str, secret: bytes) -> str:
    def part(value: dict[str, Any]) -> str:
        raw = json.dumps(value, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    signing_input = f"{part({'alg': algorithm, 'kid': 'k1', 'typ': 'JWT'})}.{part(claims)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"


def test_small_clock_skew_is_tolerated(
    oidc_client: FlaskClient, provider: tuple[Provider, str]
) -> None:
    # Expired 5 s ago: inside the default 30 s leeway.
    assert me(oidc_client, bearer(provider[0].token(lifetime=-5)))["authenticated"]


def test_rotated_key_is_fetched_on_unknown_kid(
    synced_settings: Settings, provider: tuple[Provider, str]
) -> None:
    state, url = provider
    app = oidc_app(synced_settings, url)
    client = app.test_client()
    assert me(client, bearer(state.token()))["authenticated"]
    before = state.fetches
    assert me(client, bearer(state.token()))["authenticated"]
    assert state.fetches == before  # cached
    state.add_rsa("k2")  # the provider rotates in a new key
    assert me(client, bearer(state.token("k2")))["authenticated"]
    assert state.fetches == before + 1


def test_unknown_kids_do_not_hammer_the_provider(
    synced_settings: Settings, provider: tuple[Provider, str]
) -> None:
    state, url = provider
    app = oidc_app(synced_settings, url, jwks_refetch_seconds=3600)
    client = app.test_client()
    assert me(client, bearer(state.token()))["authenticated"]
    before = state.fetches
    for n in range(5):
        state.add_rsa(f"made-up-{n}", publish=False)
        refused(client, bearer(state.token(f"made-up-{n}")))
    assert state.fetches == before


def test_provider_down_is_unavailable_not_anonymous(
    synced_settings: Settings, provider: tuple[Provider, str]
) -> None:
    state, url = provider
    app = oidc_app(synced_settings, url)
    state.down = True
    try:
        response = app.test_client().post(
            "/graphql", json={"query": ME}, headers=bearer(state.token())
        )
    finally:
        state.down = False
    assert response.status_code == 503
    assert response.get_json()["errors"][0]["extensions"]["code"] == "BACKEND_UNAVAILABLE"


def test_keys_fetched_earlier_survive_a_provider_outage(
    synced_settings: Settings, provider: tuple[Provider, str]
) -> None:
    state, url = provider
    app = oidc_app(synced_settings, url, jwks_cache_seconds=0)
    client = app.test_client()
    assert me(client, bearer(state.token()))["authenticated"]
    state.down = True
    try:
        assert me(client, bearer(state.token()))["authenticated"]
    finally:
        state.down = False


def test_inline_jwks(synced_settings: Settings, provider: tuple[Provider, str]) -> None:
    state = provider[0]
    oidc = {"issuer": ISSUER, "audience": [AUDIENCE], "jwks": {"keys": state.published}}
    settings = synced_settings.with_overrides(auth={"oidc": oidc}, limits=NO_RATE_LIMIT)
    client = create_app({"settings": settings, "TESTING": True}).test_client()
    assert me(client, bearer(state.token()))["via"] == "oidc"
    refused(client, bearer(state.token(signer="attacker")))


# --- what each role may read --------------------------------------------------------------

RUNS = "query($b: ID) { syncRuns(biobank: $b) { biobankId } }"
QUARANTINE = "query($b: ID!) { quarantine(biobank: $b) { sourceId } }"


def code_of(client: FlaskClient, query: str, biobank: str | None, who: dict[str, str]) -> str:
    error = only_error(graphql(client, query, {"b": biobank}, headers=who))
    code = error["extensions"]["code"]
    assert isinstance(code, str)
    return code


def run_biobanks(client: FlaskClient, biobank: str | None, who: dict[str, str]) -> set[str]:
    body = graphql(client, RUNS, {"b": biobank}, headers=who)
    assert "errors" not in body, body
    return {run["biobankId"] for run in body["data"]["syncRuns"]}


def test_admin_data_needs_sign_in(client: FlaskClient) -> None:
    assert code_of(client, RUNS, None, {}) == "UNAUTHENTICATED"
    assert code_of(client, QUARANTINE, "bb1", {}) == "UNAUTHENTICATED"


def test_sync_runs_for_admins_of_that_biobank_and_operators(client: FlaskClient) -> None:
    assert run_biobanks(client, None, headers("operator")) == {"bb1", "bb2"}
    assert run_biobanks(client, "bb2", headers("operator")) == {"bb2"}
    assert run_biobanks(client, None, headers("bb1_admin")) == {"bb1"}
    assert run_biobanks(client, "bb1", headers("bb1_admin")) == {"bb1"}
    assert code_of(client, RUNS, "bb2", headers("bb1_admin")) == "FORBIDDEN"
    for name in ("bb1_approved", "researcher"):
        assert code_of(client, RUNS, None, headers(name)) == "FORBIDDEN"
        assert code_of(client, RUNS, "bb1", headers(name)) == "FORBIDDEN"


def test_quarantine_for_admins_of_that_biobank_only(client: FlaskClient) -> None:
    body = graphql(client, QUARANTINE, {"b": "bb1"}, headers=headers("bb1_admin"))
    assert {r["sourceId"] for r in body["data"]["quarantine"]} == {"D7", "S9"}
    assert code_of(client, QUARANTINE, "bb2", headers("bb1_admin")) == "FORBIDDEN"
    # Raw rejected payloads are the biobank's data: not even the network operator.
    assert code_of(client, QUARANTINE, "bb1", headers("operator")) == "FORBIDDEN"
    assert code_of(client, QUARANTINE, "bb1", headers("bb1_approved")) == "FORBIDDEN"


def test_a_token_for_another_biobank_opens_nothing_here(
    oidc_client: FlaskClient, provider: tuple[Provider, str]
) -> None:
    # Approved at and administering bb2 only, asking for bb1's admin data.
    token = bearer(provider[0].token(biofed_approved_for=["bb2"], biofed_admin_of=["bb2"]))
    assert me(oidc_client, token)["approvedFor"] == ["bb2"]
    assert code_of(oidc_client, QUARANTINE, "bb1", token) == "FORBIDDEN"
    assert code_of(oidc_client, RUNS, "bb1", token) == "FORBIDDEN"
    assert run_biobanks(oidc_client, None, token) == {"bb2"}


# --- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"api_keys": {}}, "auth.api_keys: must be a list"),
        ({"api_keys": [{"id": "abc", "hash": "x", "subject": "s"}]}, r"api_keys\[0\].id"),
        ({"api_keys": [{"id": "0123abcd", "hash": "md5:00:11", "subject": "s"}]}, "hash"),
        ({"oidc": {"audience": "a", "jwks_url": "https://x"}}, "auth.oidc.issuer"),
        ({"oidc": {"issuer": "i", "audience": "a"}}, "either jwks_url or jwks"),
        (
            {
                "oidc": {
                    "issuer": "i",
                    "audience": "a",
                    "jwks_url": "https://x",
                    "algorithms": ["HS256"],
                }
            },
            "'HS256' is not one of",
        ),
        ({"oidc": {"issuer": "i", "audience": "a", "jwks": {"keys": [{"kty": "oct"}]}}}, "signing"),
        ({"passwords": []}, "unknown setting 'passwords'"),
    ],
)
def test_bad_auth_settings_name_the_setting(section: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        AuthConfig.parse(section)


def test_bad_hash_is_not_echoed() -> None:
    secret_looking = "sha256:" + "ab" * 4 + ":" + "cd" * 8
    with pytest.raises(SettingsError) as raised:
        AuthConfig.parse({"api_keys": [{"id": "0123abcd", "hash": secret_looking, "subject": "s"}]})
    assert secret_looking not in str(raised.value)


def test_settings_from_the_environment_as_json(tmp_path: Path) -> None:
    from federation.settings import load_settings

    issued = issue_api_key("env@example.org")
    settings = load_settings(
        read_files=False, environ={"BIOFED_AUTH": json.dumps({"api_keys": [issued.entry]})}
    )
    identity = Authenticator(AuthConfig.parse(settings.auth)).authenticate(f"Bearer {issued.key}")
    assert identity.subject == "env@example.org"
    with pytest.raises(AuthenticationFailed):
        Authenticator(AuthConfig.parse(settings.auth)).authenticate("Bearer bfk_0000_nope")
    assert issued.key not in repr(settings)
