"""Decrypts and verifies an encrypted logout token from logoutd with Python's jwcrypto, an
implementation independent of logoutd's. Reads one JSON object on stdin:
  {token, private_jwk, jwks, issuer, client_id, alg, enc}
and prints the claims on success; exits non-zero with the reason otherwise."""

import json
import sys

from jwcrypto import jwe, jwk, jws


def check(what, ok):
    if not ok:
        sys.exit(f"check failed: {what}")


def main():
    data = json.load(sys.stdin)
    key = jwk.JWK(**data["private_jwk"])
    token = jwe.JWE()
    token.allowed_algs = [data["alg"], data["enc"]]
    token.deserialize(data["token"], key=key)
    header = token.jose_header
    check("alg", header.get("alg") == data["alg"])
    check("enc", header.get("enc") == data["enc"])
    check("cty", header.get("cty") == "JWT")
    check("iss in the JWE header", header.get("iss") == data["issuer"])
    check("kid", header.get("kid") == data["private_jwk"]["kid"])
    inner = jws.JWS()
    inner.deserialize(token.payload.decode("ascii"))
    keys = jwk.JWKSet.from_json(json.dumps(data["jwks"]))
    inner_header = inner.jose_header
    check("inner typ", inner_header.get("typ") == "logout+jwt")
    inner.allowed_algs = [inner_header["alg"]]
    inner.verify(keys.get_key(inner_header["kid"]))
    claims = json.loads(inner.payload)
    check("iss", claims["iss"] == data["issuer"])
    check("aud", claims["aud"] == data["client_id"])
    check("events", claims["events"] == {"http://schemas.openid.net/event/backchannel-logout": {}})
    check("session_metadata", isinstance(claims.get("session_metadata"), dict))
    check("no nonce", "nonce" not in claims)
    print(json.dumps(claims))


main()
