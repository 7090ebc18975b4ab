"""Source stage: an input -> Packet, one module per input format.

* :mod:`.pdml`: PDML (``tshark -T pdml``, on stdin or from a capture), streamed with
  ``lxml.etree.iterparse``;
* :mod:`.fields`: ``tshark -T fields`` output, what ``osflow-post -r`` reads (:mod:`osflow.tshark`
  runs tshark);
* :mod:`.common`: what the readers share (endpoints, connection ids, the Packet they make).

Each application protocol's fields are read by its module (:mod:`osflow.protocols`).
"""

from __future__ import annotations

from ..protocols.base import unescape as _unescape
from ..protocols.mysql import result_set_pdu as _result_set_pdu
from .common import Addresses as _Addresses
from .common import Reader
from .pdml import APP_PROTOCOLS, PdmlReader, tshark_pdml_command

__all__ = ["APP_PROTOCOLS", "PdmlReader", "Reader", "_Addresses", "_result_set_pdu", "_unescape",
           "tshark_pdml_command"]
