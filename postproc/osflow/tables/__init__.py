"""Socket tables (``ss``) and process tables (``ps``): text -> SocketEntry, Process.

``parse_ss`` reads what ``ss -tp``, ``ss -tnp``, ``ss -tnpH``, ``ss -lnp`` and
``ss -tlnp`` print: with or without the header line, with service names
(``:mysql``) or port numbers, IPv4 or IPv6, with or without the leading
``Netid`` column (only ``tcp`` lines are kept; unix, udp and other sockets are
skipped without a word).  It also reads ``netstat -tnp`` / ``-tlnp`` / ``-tanp``
(net-tools) and ``lsof -nP -iTCP`` (any ``-sTCP:`` filter), with or without
their header lines, into the same entries: ss's state names, the owner from
``PID/Program`` or ``COMMAND PID FD``.  A file may hold many snapshots, each introduced by a
line ``### <epoch seconds> ...``; every entry gets the epoch of its snapshot as
``time`` (``None`` when the file has no such line, as in a single paste).

``parse_ps`` reads ``ps aux``, ``ps -ef`` and ``ps -eo pid,ppid,user,args``
(any ``ps -o`` list whose last column is the command, when the header line is
there), with or without the header: headerless lines (a ``ps aux | grep ...``
paste) are recognised by their shape.  Sections introduced by
``##### <epoch> BEFORE|AFTER: <cmd>`` lines give their processes that ``time``
and may each use another format.

Odd lines never raise: they are skipped and named in ``warnings``
(``file:line: expected ..., found '...'``).  Only a file of which no line at all
is recognisable raises ``TableError`` (a ps file given as an ss file, say).

``SocketTable`` and ``ProcessTable`` gather the entries of many files for the
join: which process owned the local end of a connection at a given time.

One module per format, as the ``jc`` project has one parser per command: :mod:`.ss` (and
``parse_ss``, which reads a ``--ss`` file of any of the socket formats), :mod:`.netstat`,
:mod:`.lsof`, :mod:`.ps`; :mod:`.lines` what the socket formats share; :mod:`.index` the
tables the join consults.

Tricky lines, verbatim from a controller (service name as port, wildcard
listener with a ``Netid`` column, an IPv4-mapped IPv6 address):

>>> e = parse_ss('ESTAB      0      0               10.0.20.11:43428          '
...              '10.0.20.11:mysql users:(("apache2",pid=6458,fd=12))  ').entries[0]
>>> e.state, str(e.sockname), str(e.peername), e.users
('ESTAB', '10.0.20.11:43428', '10.0.20.11:3306', (SocketUser(comm='apache2', pid=6458, fd=12),))
>>> e = parse_ss('tcp   LISTEN 0      511         *:5000        *:*    '
...              'users:(("apache2",pid=6460,fd=6),("apache2",pid=6459,fd=6),("apache2",pid=869,fd=6))').entries[0]
>>> e.sockname, e.peername, [u.pid for u in e.users]
(Address(host='*', port=5000), None, [6460, 6459, 869])
>>> parse_address('[::ffff:127.0.0.1]:5000'), parse_address('127.0.0.53%lo:53')
(Address(host='127.0.0.1', port=5000), Address(host='127.0.0.53', port=53))

A ``ps aux`` line without its header keeps the spaces inside the command:

>>> p = parse_ps('keystone    6451  0.0  0.1 108884 11456 ?        Sl   00:00   '
...              '0:00 (wsgi:keystone-pu -k start').processes[0]
>>> p.pid, p.user, p.args
(6451, 'keystone', '(wsgi:keystone-pu -k start')
"""

from __future__ import annotations

from ..addresses import canonical_address, parse_address
from .index import ProcessTable, SocketTable
from .lines import TableError
from .ps import PsResult, parse_ps
from .ss import SsResult, parse_ss

__all__ = [
    "TableError",
    "SsResult",
    "PsResult",
    "parse_ss",
    "parse_ps",
    "parse_address",
    "canonical_address",
    "SocketTable",
    "ProcessTable",
]
