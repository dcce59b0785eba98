"""Clients for Norsk helsenett's national services, each behind a small interface:

* :mod:`~interop.national.helseid` — HelseID client credentials (``private_key_jwt``) with DPoP,
  one client per municipality or legal entity (:mod:`~interop.national.tenants`);
* :mod:`~interop.national.edi2` — EDI 2.0 Meldingstjener (send, poll, fetch, mark read, AppRec);
* :mod:`~interop.national.ar` — Adresseregisteret (CommunicationParty API) and the address-book
  sync; :mod:`~interop.national.flr` — Fastlegeregisteret (who is the patient's GP).
"""
