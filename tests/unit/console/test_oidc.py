"""The OIDC checks: PKCE's S256 challenge, and an ID token accepted only when its signature,
issuer, audience, expiry and nonce all hold."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from services.console.oidc import (
    Pkce,
    ProviderConfiguration,
    SignInRefused,
    authorization_url,
    challenge_of,
    email_of,
    verified_claims,
)

ISSUER = "https://sso.example.com"
CLIENT = "closeloop-console"
_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _keys() -> dict[str, Any]:
    public = RSAAlgorithm.to_jwk(_KEY.public_key(), as_dict=True)
    return {"keys": [{**public, "kid": "k1", "use": "sig", "alg": "RS256"}]}


def _token(key: Any = _KEY, **claims: Any) -> str:
    now = int(time.time())
    body = {
        "iss": ISSUER,
        "aud": CLIENT,
        "sub": "248289761001",
        "iat": now,
        "exp": now + 300,
        "nonce": "n-0S6_WzA2Mj",
        "email": "Mei.Lin@Example.org",
        "email_verified": True,
        **claims,
    }
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": "k1"})


def _check(token: str, nonce: str = "n-0S6_WzA2Mj") -> dict[str, Any]:
    return verified_claims(token, _keys(), ISSUER, CLIENT, nonce)


def test_the_challenge_is_rfc_7636s_example() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert challenge_of(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    pkce = Pkce.new()
    assert 43 <= len(pkce.verifier) <= 128
    assert pkce.challenge == challenge_of(pkce.verifier)


def test_the_authorization_url_asks_for_a_code_with_s256() -> None:
    configuration = ProviderConfiguration(
        ISSUER, f"{ISSUER}/authorize", f"{ISSUER}/token", f"{ISSUER}/jwks"
    )
    url = authorization_url(configuration, CLIENT, "https://c/cb", "st", "no", "ch")
    assert url.startswith(f"{ISSUER}/authorize?response_type=code&client_id={CLIENT}")
    assert "code_challenge=ch&code_challenge_method=S256" in url
    assert "state=st&nonce=no" in url


def test_discovery_for_another_issuer_is_refused() -> None:
    document = {
        "issuer": "https://evil.example.com",
        "authorization_endpoint": "a",
        "token_endpoint": "t",
        "jwks_uri": "j",
    }
    with pytest.raises(SignInRefused) as refused:
        ProviderConfiguration.of(document, ISSUER)
    assert refused.value.check == "issuer"


def test_a_good_token_gives_its_claims_and_the_email_in_lower_case() -> None:
    claims = _check(_token())
    assert claims["sub"] == "248289761001"
    assert email_of(claims) == "mei.lin@example.org"


@pytest.mark.parametrize(
    ("token", "nonce", "check"),
    [
        (lambda: _token(key=_OTHER_KEY), "n-0S6_WzA2Mj", "signature"),
        (lambda: _token(), "another nonce", "nonce"),
        (lambda: _token(nonce=None), "n-0S6_WzA2Mj", "nonce"),
        (lambda: _token(iss="https://evil.example.com"), "n-0S6_WzA2Mj", "id_token"),
        (lambda: _token(aud="someone-else"), "n-0S6_WzA2Mj", "id_token"),
        (lambda: _token(exp=int(time.time()) - 3600), "n-0S6_WzA2Mj", "id_token"),
    ],
    ids=["signed-by-another-key", "wrong-nonce", "no-nonce", "issuer", "audience", "expired"],
)
def test_a_token_failing_a_check_is_refused_naming_it(token: Any, nonce: str, check: str) -> None:
    with pytest.raises(SignInRefused) as refused:
        _check(token(), nonce)
    assert refused.value.check == check


def test_an_unsigned_or_hs256_token_is_refused() -> None:
    unsigned = jwt.encode({"iss": ISSUER}, "", algorithm="none")
    shared = jwt.encode(
        {"iss": ISSUER}, "a shared secret that is long enough for HS256", algorithm="HS256"
    )
    for token in (unsigned, shared):
        with pytest.raises(SignInRefused) as refused:
            _check(token)
        assert refused.value.check == "signature"


def test_an_unverified_or_missing_email_is_refused() -> None:
    with pytest.raises(SignInRefused):
        email_of({"email": "a@b.c", "email_verified": False})
    with pytest.raises(SignInRefused):
        email_of({"sub": "1"})
