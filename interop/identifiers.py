"""Norwegian identifiers (fødselsnummer, D-nummer, H-nummer, FHN, HPR, HER-id, org.nr.).

The rules live in :mod:`adapters.identifiers`, beside the adapters that check the numbers
they read (adapters import nothing of ``interop``); the service imports them from here.
"""

from adapters.identifiers import *  # noqa: F403
from adapters.identifiers import (  # the person-number internals synthetic identities use
    D_NUMBER_DAY_OFFSET as D_NUMBER_DAY_OFFSET,
)
from adapters.identifiers import (
    K1_REMAINDERS_2032 as K1_REMAINDERS_2032,
)
from adapters.identifiers import __all__ as __all__
from adapters.identifiers import (
    _birth_date as _birth_date,
)
from adapters.identifiers import (
    _remainders as _remainders,
)
