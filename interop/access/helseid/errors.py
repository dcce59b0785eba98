"""Refusals of HelseID credentials: 401 with a ``WWW-Authenticate`` challenge in the scheme the
client used (RFC 6750 §3, RFC 9449 §7.1), 403 for an authenticated caller we do not serve."""

from __future__ import annotations

from interop.fhir.outcome import FhirError, error

DPOP_ALGS_CHALLENGE = "ES256 ES384 ES512 PS256 PS384 PS512 RS256 RS384 RS512"


def _quoted(text: str) -> str:
    return "".join(c for c in text if c not in '"\\' and 0x20 <= ord(c) < 0x7F)


def challenge(scheme: str, error_code: str | None = None, description: str = "") -> str:
    parts = ['realm="dho-interop"']
    if scheme == "DPoP":
        parts.append(f'algs="{DPOP_ALGS_CHALLENGE}"')
    if error_code:
        parts.append(f'error="{error_code}"')
        if description:
            parts.append(f'error_description="{_quoted(description)}"')
    return f"{scheme} " + ", ".join(parts)


def invalid_token(message: str, scheme: str = "Bearer") -> FhirError:
    """The access token is not acceptable (signature, issuer, audience, time, type …)."""
    return error(
        401,
        "login",
        message,
        headers={"WWW-Authenticate": challenge(scheme, "invalid_token", message)},
    )


def invalid_proof(message: str) -> FhirError:
    """The DPoP proof is missing or not acceptable."""
    return error(
        401,
        "login",
        message,
        headers={"WWW-Authenticate": challenge("DPoP", "invalid_dpop_proof", message)},
    )


def insufficient_user_authentication(message: str, scheme: str) -> FhirError:
    """A user logged in with too low a security level (RFC 9470)."""
    return error(
        401,
        "login",
        message,
        headers={
            "WWW-Authenticate": challenge(scheme, "insufficient_user_authentication", message)
        },
    )


def insufficient_scope(message: str, scheme: str) -> FhirError:
    return error(
        403,
        "forbidden",
        message,
        headers={"WWW-Authenticate": challenge(scheme, "insufficient_scope", message)},
    )


def not_served(message: str) -> FhirError:
    """A valid token from a client or organisation the deployer has not given a role."""
    return error(403, "forbidden", message)
