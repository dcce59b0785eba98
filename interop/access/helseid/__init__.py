"""HelseID (NHN's OAuth 2.0 / OpenID Connect server) as the identity provider for EPJ systems,
hospitals and municipalities: access-token validation (:mod:`.tokens`, keys from
:mod:`.jwks`), DPoP proofs (:mod:`.dpop`, replay check :mod:`.replay`), and the mapping of
claims to an actor (:mod:`.claims`, :mod:`.clients`). The facts behind it are collected in
``standards/helseid/README.md`` of the shared specifications."""

from interop.access.helseid.resolver import HelseIdResolver

__all__ = ["HelseIdResolver"]
