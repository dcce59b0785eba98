"""Text for people: the Norwegian message catalogue and number/time formatting.

Codes stay in the data; every sentence a clinician reads is looked up here by key
(``mappings/text/nb.yaml``), so another language is a file, not a rewrite.
"""

from interop.text.catalogue import Catalogue, catalogue, text
from interop.text.format import (
    elapsed,
    local_time,
    measurement_name,
    number,
    plural,
    quantity,
    unit,
    zone_name,
)

__all__ = [
    "Catalogue",
    "catalogue",
    "elapsed",
    "local_time",
    "measurement_name",
    "number",
    "plural",
    "quantity",
    "text",
    "unit",
    "zone_name",
]
