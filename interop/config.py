"""Settings from the environment (prefix ``INTEROP_``).

Every path the service needs at run time either comes from the installed packages
(mappings, FHIR profiles) or from a setting; nothing is found through the current directory
or through ``../shared``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import ByteSize, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MiB = 1024 * 1024


def _default_ingest_max_body_size() -> dict[str, ByteSize]:
    # an "Export All Health Data" export.xml of a few years with a watch is hundreds of MB
    return {"apple-health": ByteSize(512 * MiB)}


def _default_database_url() -> str:
    return f"sqlite:///{Path('var').absolute() / 'interop.db'}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INTEROP_", extra="ignore")

    database_url: str = Field(default_factory=_default_database_url)
    admin_key: str = "dev-admin-key"
    timezone: str = "Europe/Oslo"
    """Zone given to zone-less input times (the assumption is recorded)."""
    base_url: str | None = None
    """Public base URL for absolute links (Bundle.link, fullUrl); default: taken from each
    request (set it when the service runs behind a proxy that rewrites the host)."""
    kith_schema_dir: Path | None = None
    """Folder with the KITH/e-helse XSDs (MsgHead, PLO, Dialogmelding, AppRec) and catalog.xml."""
    mappings_dir: Path | None = None
    """Override for the packaged ``mappings/`` folder (a domain expert's edited copy)."""
    search_max_count: int = 1000
    search_default_count: int = 50
    total_limit: int = 10000
    """``Bundle.total`` is counted up to this many matches and omitted above it."""
    max_future_skew_seconds: int = 300
    """How far in the future a measurement time may be before it is rejected."""
    late_after_hours: float = 24
    """A yellow or red reading taken longer ago than this when it arrives (a gateway that was
    offline, a backfill) is late (*etterregistrert*): a routine Task marked late, no Flag and
    no urgent message to the GP about a state that may be long past (``INTEROP_LATE_AFTER_HOURS``)."""
    oldest_measurement_year: int = 2000
    emergency_access_minutes: int = 240
    """How long an emergency access (*nødrett*) stays open at most (an actor may ask for less)."""
    gp_access: Literal["own", "practice"] = "own"
    """Which patients a GP sees: ``own`` — those they are fastlege for; ``practice`` — every
    patient of a GP at the same practice (common where the record is the practice's)."""
    our_herid: str | None = None
    our_orgnr: str | None = None
    log_json: bool = True
    mllp_port: int | None = None
    """Listen for HL7 v2 over MLLP on this port (in the API process; one per host)."""
    mllp_host: str = "127.0.0.1"
    mllp_senders: Path | None = None
    """The list of who may send HL7 v2 over MLLP and in whose name (MSH-3/MSH-4, the addresses
    they connect from, vendor or follow-up centre); default ``mllp-senders.yaml`` in the
    mappings folder, which lists nobody. See ``interop.ingest.mllp_senders``."""
    mllp_process_inbox: bool = True
    """Turn stored HL7 messages into Observations in the API process (a thread beside the
    listener). Set false when ``interop worker`` processes run: the API process then only
    stores and acknowledges, which keeps ACKs fast."""
    suppress_below: int = 5
    """Indicators withhold counts below this, so no figure points at one patient."""
    outbox_lease_seconds: float = 60.0
    """How long a worker holds the messages it claimed; a crashed worker's messages go back to
    the queue when it runs out. Keep it at least twice the transports' 30 s timeout."""
    inbox_lease_seconds: float = 120.0
    """How long a processor holds a stored inbound message (MLLP) it claimed; it renews the
    lease before each message, so this must cover processing one message. Another worker
    takes back a ``processing`` message only after its lease ran out (its holder crashed)."""
    edi2_base_url: str | None = None
    """Our EDI 2.0 Meldingstjener (the worker polls it for messages to our HER-ids)."""
    environment: Literal["production", "test"] = "production"
    """``test`` in the national test environments (NHN's test network, Test-Norge): person
    numbers of those environments (``mappings/identifiers/test-environments.yaml``) are then
    accepted in received messages; in ``production`` they are refused (AppRec E31)."""
    file_drop_settle_seconds: float = 2.0
    """A file in a file-drop ``in/`` folder is read only once it has not changed for this long
    (a sender still writing it is never read half-way); files named ``.*``, ``*.tmp`` or
    ``*.part`` are never read (a sender that renames into place needs no settle time)."""
    edi2_api_version: Literal["2", "3"] = "2"
    """EDI 2.0 ``api-version``: 2 (stable) or 3 (202 on send, 423 for a locked HER-id; receives
    through notifications, which are not read yet — keep polling with 2)."""
    edi2_source_system: str = "DHO Interop, v0.1.0"
    """``nhn-source-system``: our system's name and version, as NHN asks."""
    edi2_max_post_bytes: int = 35_000_000
    """Largest request to EDI 2.0 (NHN: 35 MB per POST); a larger message is dead-lettered."""
    helseid_tenants_file: Path | None = None
    """The HelseID clients we call NHN with, one per municipality or legal entity (YAML, see
    :mod:`interop.national.tenants`). Unset = calls to EDI 2.0 go without HelseID (only for a
    Meldingstjener on a closed test network)."""
    ar_base_url: str | None = None
    """Adresseregisteret's CommunicationParty API (test: ``https://cpapi.test.grunndata.nhn.no``);
    unset = no address-book sync."""
    ar_tenant: str | None = None
    """Which tenant's HelseID client calls AR (default: the first in the tenants file)."""
    flr_url: str | None = None
    """Fastlegeregisteret's SOAP endpoint (test: ``https://ws-web.test.nhn.no/v2/flr``)."""
    flr_username: str | None = None
    flr_password: SecretStr | None = None
    """The Grunndata account NHN issued for FLR (HTTP Basic)."""
    addressbook_sync_seconds: float = 3600.0
    """How often ``interop worker`` syncs the address book with AR and patients' GPs with FLR
    (0 = never; ``interop addressbook sync`` runs it by hand)."""
    pmd_bundle_type: Literal["batch", "collection"] = "batch"
    """Bundle type of uploads to Pasientens måledata: ``batch`` per the IG's
    pmd-Bundle-Observation profile (entries with ``request``), ``collection`` as in NHN's PMD 2.0
    examples (no ``request``, FHIR bdl-3); the sources disagree (standards/nhn/pmd/README.md)."""
    pmd_tenant: str | None = None
    """The tenant whose HelseID client uploads to PMD when the upload names no organisation
    number of a tenant (the vital-sign profiles carry no performer)."""
    jft_tenant: str | None = None
    """The tenant whose HelseID client journals to JFT when the Bundle's author organisation is
    no tenant's."""
    jft_max_bytes: int = 1_000_000
    """Largest request to Journalføringstjenesten (NHN: about 1 MB)."""
    vkp_tenant: str | None = None
    """The tenant whose HelseID client journals to VKP (classic, ``connectionType`` ``vkp``)
    when the Bundle's author organisation is no tenant's. VKP wants one HelseID client per
    system instance (vendor × municipality): one tenant per municipality is that."""
    vkp_max_bytes: int | None = None
    """Largest request to VKP; NHN publishes none (unset = no limit here)."""
    nhn_plans_base_url: str | None = None
    """NHN Pasientens planer (2026 plan API with zones), for ``interop plans import-nhn`` and
    the import endpoint (development: ``https://planer.dev.nhn.no``; test and production were
    not published). Export goes to the Endpoint subscribed with ``nhn-plans`` (its address)."""
    nhn_plans_path: str = "/plan"
    """Path of the plan collection under the base URL (search ``GET {path}?patient=``, create
    ``POST {path}``, update ``PUT {path}/{id}``, ``{path}/{id}/history``); NHN's pages show
    ``/plan/{id}/history`` but not the search and create paths."""
    nhn_plans_helseid: bool = True
    """Call Pasientens planer with HelseID + DPoP (API ``plans`` in the tenants file; audience
    and scope not published: set them under ``apis:``). ``false`` for NHN's development
    environment, which has no HelseID."""
    nhn_plans_tenant: str | None = None
    """The tenant whose HelseID client calls Pasientens planer (default: the only tenant)."""
    nhn_plans_poll_seconds: float = 900.0
    """How often ``interop worker`` reads the patients' NHN plans for changes made there by
    others (when ``INTEROP_NHN_PLANS_BASE_URL`` is set; 0 = never; ``interop plans poll-nhn``
    runs it by hand). A change becomes a conflict on our plan and a Task for the care team;
    our plan is never changed by it."""
    nhn_careplan_base_url: str | None = None
    """NHN's older careplan service (HIT careplan, "Pasientens planer API"), whose status
    endpoint tells whether a patient has an active care plan there and when it last changed
    (``interop plans status-nhn``, ``GET /api/v1/patients/{fnr}/plan/nhn-status``). Unset = not
    asked. Not the 2026 plan API with zones (``INTEROP_NHN_PLANS_BASE_URL``)."""
    nhn_careplan_variant: str = "patient-careplan"
    """Which published variant (``mappings/national/nhn-careplan.yaml``): ``patient-careplan``
    (nhn-* headers, audience ``nhn:patient-careplan``) or ``kjernejournal`` (hit-* headers,
    audience ``nhn:careplan``); the token type is the HelseID API's (Bearer per NHN's pages)."""
    nhn_careplan_tenant: str | None = None
    """The tenant whose HelseID client asks the careplan service (default: the only tenant); it
    needs both organisation numbers in the tenants file."""
    cppa_base_url: str | None = None
    """NHN's CPPA API (test ``https://cppa.test.grunndata.nhn.no``): asked before a PLO or
    Dialogmelding goes over EDI 2.0 whether the receiver takes that type. Unset = not asked."""
    cppa_fallback: Literal["dead-letter", "send"] = "dead-letter"
    """What to do when CPPA says the receiver cannot take the type: dead-letter with the reason,
    or send anyway (logged)."""
    status_report_days: int = 7
    """Send the GP a PLO *Statusrapport* for each measuring patient this often (0 = never)."""
    sqlite_cache_mb: int = 64
    """SQLite page cache per connection (MiB)."""
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    """SQLite's ``PRAGMA synchronous`` (WAL mode). ``FULL``: a transaction the service has
    acknowledged (a stored Observation, an audit event) survives a power loss or an OS crash,
    at the cost of a disk flush per commit (group commit shares it between the requests of a
    batch). ``NORMAL``: a process crash loses nothing, but a power loss may take the last
    transactions with it — for a demo or a test run, never for patient data."""
    sqlite_checkpoint_seconds: float = 0.5
    """How often a thread of each process copies SQLite's write-ahead log back into the
    database file (a ``PASSIVE`` checkpoint), so that no request's COMMIT has to (see
    ``interop.store.wal_checkpoint``). 0 leaves it to SQLite's automatic checkpoint every
    1,000 pages, inside whichever COMMIT crosses that line."""
    gc_gen0_threshold: int = 10_000
    """Allocations between the garbage collector's young-generation passes in a service process
    (Python's default is 700; 0 keeps Python's defaults). See ``interop.runtime.tune_gc``."""
    outbox_retention_days: int = 365
    """``interop prune`` removes delivered outbox messages and processed inbound messages
    older than this many days (see ``interop.routing.retention``)."""
    audit_key_file: Path | None = None
    """File with the audit chain's HMAC key (64 hex digits; ``interop audit keygen`` makes one).
    Keep it outside the database and its backups. Without it (and without ``audit_key``) a
    development key is generated into ``var/audit.key`` with a warning."""
    audit_key: SecretStr | None = None
    """The audit chain's HMAC key itself (64+ hex digits), instead of ``audit_key_file``."""
    audit_key_dir: Path | None = None
    """Folder of earlier audit keys (``*.key`` files): links signed with a rotated-out key
    still verify when its file is here."""
    audit_head_file: Path | None = None
    """JSON-lines file the audit chain's head is appended to (keep it on other storage than
    the database); ``interop audit verify`` reads it to detect truncation and re-chaining."""
    audit_head_export_seconds: float = 300.0
    """How often ``interop worker`` exports the audit chain's head (0 = never)."""
    audit_batch_max: int = 500
    """The most audit events appended to the chain in one transaction (group commit)."""

    # ---- API keys ------------------------------------------------------------------------
    key_cache_seconds: float = 2.0
    """How long an API process trusts what it looked up about an API key (known, unknown,
    revoked). A key revoked through one process is refused by every other process at most
    this long after (keep it at most 5 s); 0 looks every key up on every request."""
    key_cache_max_entries: int = 10_000
    """At most this many API-key look-ups (known and unknown keys) are cached per process, so
    a flood of made-up keys cannot grow memory without bound."""

    # ---- HelseID (NHN's OAuth 2.0 / OpenID Connect server) as identity provider ---------------
    helseid_issuer: str | None = None
    """The HelseID issuer, exactly as in its discovery document (test:
    ``https://helseid-sts.test.nhn.no``, production: ``https://helseid-sts.nhn.no``). Unset =
    HelseID access tokens are not accepted (API keys only)."""
    helseid_audience: str | None = None
    """Our API's audience (the *kortnavn* registered in HelseID self-service); a token's ``aud``
    must contain it. Required when ``helseid_issuer`` is set."""
    helseid_jwks_uri: str | None = None
    """Where HelseID's signing keys are fetched; default: ``jwks_uri`` from
    ``{issuer}/.well-known/openid-configuration``."""
    helseid_required_scopes: str = ""
    """Space-separated scopes every HelseID access token must carry (all of them); empty = no
    scope check."""
    helseid_accept_jwt_typ: bool = False
    """Accept access tokens whose header ``typ`` is ``JWT`` besides ``at+jwt``. HelseID's
    validation guide allows both; RFC 9068 says ``at+jwt``, which keeps ID tokens and other JWTs
    from the same issuer from being used as access tokens, so the default is off."""
    helseid_leeway_seconds: int = 5
    """Clock skew allowed on a token's ``exp``/``nbf`` and on a DPoP proof's ``iat``."""
    helseid_min_security_level: int = 4
    """Lowest ``helseid://claims/identity/security_level`` accepted in a user token (4 = BankID,
    Buypass, Commfides: high assurance)."""
    helseid_clients_file: Path | None = None
    """Which HelseID clients and organisations get which role (YAML); default:
    ``access/helseid-clients.yaml`` in ``mappings_dir`` if set, else the packaged file."""
    helseid_jwks_refetch_seconds: float = 30.0
    """Least time between two fetches of HelseID's keys caused by a token with an unknown
    ``kid`` (key rotation), so forged ``kid`` values cannot make us hammer HelseID."""
    helseid_jwks_max_age_seconds: float = 3600.0
    """Keys older than this are fetched again on the next request (a key HelseID withdrew
    stops being trusted)."""
    helseid_token_cache_entries: int = 10_000
    """Validated access tokens (signature and claims) remembered per process until they
    expire, so a token used again costs no RSA check; the DPoP proof is checked every time."""
    dpop_max_age_seconds: int = 60
    """How old a DPoP proof's ``iat`` may be; its ``jti`` is remembered (in the database, for
    all API processes) this long plus the leeway, and a second use is refused."""

    @model_validator(mode="after")
    def _helseid_complete(self) -> Settings:
        if self.helseid_issuer and not self.helseid_audience:
            raise ValueError(
                "INTEROP_HELSEID_ISSUER is set but INTEROP_HELSEID_AUDIENCE is not: "
                "HelseID tokens cannot be checked without our audience"
            )
        return self

    # ---- browsers and SMART apps (interop.api.cors, interop.api.smart) ----------------------
    cors_allowed_origins: str = ""
    """Origins (scheme://host[:port]) whose browser code may call the API, separated by commas
    or spaces; ``*`` = any origin (then never with credentials). Empty = no cross-origin
    access: a preflight is refused and no CORS header is sent."""
    cors_allow_credentials: bool = False
    """Let browsers send cookies/``Authorization`` from the allowed origins
    (``Access-Control-Allow-Credentials: true``); refused together with ``*``."""
    cors_max_age_seconds: int = 600
    """How long a browser may cache a preflight answer."""
    helseid_authorization_endpoint: str | None = None
    """HelseID's authorization endpoint for ``/.well-known/smart-configuration``; default
    ``{issuer}/connect/authorize``."""
    helseid_token_endpoint: str | None = None
    """HelseID's token endpoint for ``/.well-known/smart-configuration``; default
    ``{issuer}/connect/token``."""
    helseid_scopes_supported: str = ""
    """Space-separated scopes our API offers (published in the SMART configuration); default
    the required scopes."""

    @model_validator(mode="after")
    def _cors_consistent(self) -> Settings:
        if self.cors_allow_credentials and "*" in self.cors_origins():
            raise ValueError(
                "INTEROP_CORS_ALLOWED_ORIGINS is '*' and INTEROP_CORS_ALLOW_CREDENTIALS is true: "
                "credentials may only be allowed for named origins"
            )
        return self

    def cors_origins(self) -> list[str]:
        return [o.rstrip("/") for o in self.cors_allowed_origins.replace(",", " ").split() if o]

    export_dir: Path | None = None
    """Where bulk ``$export`` jobs write their NDJSON files (one folder per job); default
    ``var/exports``. Shared by every API process that serves the status and file URLs."""
    export_max_seconds: float = 3600.0
    """An export job still running after this long is reported failed."""

    # ---- limits on what a client may send (see interop.api.limits, README "Limits") -------
    max_body_size: ByteSize = ByteSize(10 * MiB)
    """Largest request body (FHIR JSON on ``/fhir``, ``/ingest/*`` and every other POST/PUT);
    413 above it. Accepts ``10MiB``, ``10MB`` or a number of bytes."""
    max_kith_message_size: ByteSize = ByteSize(35 * MiB)
    """Largest KITH XML message read, on every channel (``POST /api/v1/messages/inbound``, file
    drop, EDI 2.0); NHN's 35 MB limit on a business document. Attachments up to it are read
    (text nodes above libxml2's 10 MB default included); larger messages are refused unread."""
    ingest_max_body_size: dict[str, ByteSize] = Field(default_factory=_default_ingest_max_body_size)
    """Per-adapter limits for ``POST /ingest/{adapter}`` that differ from ``max_body_size``
    (JSON, e.g. ``{"apple-health": "512MiB", "mapped-csv": "50MiB"}``)."""
    json_max_depth: int = 64
    """Deepest nesting of objects and arrays accepted in a JSON body (FHIR resources are
    shallow; a Bundle of Observations is under 15 levels)."""
    search_max_values: int = 2000
    """Most values one search may carry, all parameters and comma-separated values together
    (``code=a,b,…`` counts each code); 400 above it."""
    mllp_idle_timeout_seconds: float = 300.0
    """An MLLP connection that sends nothing for this long is closed (0 = never)."""
    mllp_max_frame_size: ByteSize = ByteSize(10 * MiB)
    """Largest HL7 v2 message over MLLP; a larger frame is read past (never kept) and
    answered ``AR``."""


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings_cache() -> None:
    get_settings.cache_clear()
