"""What changes the analysis: one frozen object, built once from the command line, given to the stages.

:class:`AnalysisOptions` is what :func:`osflow.pipeline.analyse`, :class:`osflow.pipeline.Stream`
and the flow stage (:func:`osflow.flow.build_flow`, :class:`osflow.flow.FlowBuilder`) take instead
of loose arguments.  How the flow is drawn (``--show-broker``, the secrets' column) is the
renderers' business: :class:`osflow.render.common.RenderOptions`.

>>> o = AnalysisOptions(overrides=((5000, "keystone"),), show_all=True)
>>> o.port_names, o.group, o.horizon
({5000: 'keystone'}, True, 10.0)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # a type only: options depend on no stage
    from .foreground import Client

#: How much capture time a streamed flow reads past a request before it writes it (seconds): the
#: replies, deliveries and children that come later, the evidence that names a connection, the
#: request ids that make a pair foreground.  Memory holds about three horizons of pairs.
HORIZON = 10.0


@dataclass(frozen=True)
class AnalysisOptions:
    """The options that change what the stages find (not how it is drawn)."""

    overrides: tuple[tuple[int, str], ...] = ()  #: ``--service PORT=NAME``: the port map's names overridden
    client: Client | None = None  #: who the command is (``--client``, meta.json); None: every OpenStackClient end
    show_secrets: bool = False  #: tokens, passwords and cache keys in full in the pairs' words (``--show-secrets``)
    group: bool = True  #: runs of similar DB/cache calls collapsed into one step (``--no-group``: False)
    show_all: bool = False  #: background pairs in the steps too (``--all``)
    explain: bool = False  #: also name the connections without the socket tables (``--explain``)
    horizon: float = HORIZON  #: a streamed flow's horizon, in seconds of capture time
    show_proxies: bool = False  #: a request through a proxy as its legs, the proxy a participant (``--show-proxies``)
    #: ``--endpoint URL=SERVICE``: (URL, service key), a request under URL drawn to the service behind
    #: the web server it was sent to (devstack's path prefixes and the keystone catalog serve without it)
    endpoints: tuple[tuple[str, str], ...] = ()

    @property
    def port_names(self) -> dict[int, str]:
        """``overrides`` as the join takes them: port -> service name."""
        return dict(self.overrides)
