"""Norwegian identifiers (fødselsnummer, D-nummer, H-nummer, FHN, HPR, HER-id, org.nr.).

The rules live in :mod:`adapters.identifiers`, beside the adapters that check the numbers
they read (adapters import nothing of ``interop``); the service imports them from here.
"""

from adapters.identifiers import *  # noqa: F403
from adapters.identifiers import __all__ as __all__
