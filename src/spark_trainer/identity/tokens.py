"""JWT access/refresh tokens and API key secrets.

Verification is strict: the algorithm is pinned (``alg: none`` and algorithm
confusion are refused), ``exp``/``iat``/``sub``/``typ`` are required, and the
token type must match its use.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import jwt

from spark_trainer.errors import Unauthorized

ALGORITHM = "HS256"
ISSUER = "sparktrainer"
API_KEY_PREFIX = "stk_"

TokenType = Literal["access", "refresh"]


@dataclass(frozen=True, slots=True)
class TokenClaims:
    subject: str
    token_type: TokenType
    jti: str
    family_id: str | None
    expires_at: int


def encode_token(
    *,
    key: str,
    subject: str,
    token_type: TokenType,
    now: datetime,
    ttl_seconds: int,
    jti: str,
    family_id: str | None = None,
) -> str:
    claims: dict[str, object] = {
        "sub": subject,
        "typ": token_type,
        "iss": ISSUER,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(seconds=ttl_seconds)).timestamp()),
        "jti": jti,
    }
    if family_id is not None:
        claims["fam"] = family_id
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def decode_token(token: str, *, key: str, expected_type: TokenType) -> TokenClaims:
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "typ", "jti", "iss"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("Token has expired") from None
    except jwt.PyJWTError:
        raise Unauthorized("Invalid token") from None
    if claims.get("typ") != expected_type:
        raise Unauthorized("Invalid token")
    return TokenClaims(
        subject=str(claims["sub"]),
        token_type=expected_type,
        jti=str(claims["jti"]),
        family_id=claims.get("fam"),
        expires_at=int(claims["exp"]),
    )


def new_api_key_secret() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def api_key_digest(secret: str) -> str:
    # API keys are 256-bit random secrets, so a fast digest is as safe as a slow
    # password hash here and keeps per-request authentication cheap.
    return hashlib.sha256(secret.encode()).hexdigest()


def is_api_key(credential: str) -> bool:
    return credential.startswith(API_KEY_PREFIX)
