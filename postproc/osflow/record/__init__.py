"""``osflow record``: capture the OpenStack traffic of a command, with the owner of every socket.

``osflow record [-i NAME …] [-o DIR] [--ports …] -- COMMAND [ARGS…]`` (or ``--duration SECONDS``
without a command) replaces the analyst's three terminals:

1. a socket-owner log starts (``ss.txt``): a first full look at every process's sockets.  Where
   the kernel allows (root, BTF, a BPF ring buffer), the owners then come from the kernel as
   connections happen (:mod:`~osflow.record.owners`): eBPF programs on the ``connect``,
   ``accept``/``accept4`` and ``listen`` system calls send each socket on a captured port with
   its process, fd, inode and addresses, read every 100 ms and logged at once; a poll every 5 s
   looks for anything they did not name.  Elsewhere (``meta.json``'s ``socket_log.owners`` says
   why), a poller that lists the TCP sockets (netlink sock_diag as ``ss`` does; /proc/net/tcp{,6} as the
   fallback) and, for each new socket on a captured port, finds its owner through an
   inode -> (pid, fd) cache: only new inodes need a look into ``/proc/<pid>/fd``, and only of the
   likely owners first (the processes holding the listening socket of that port, COMMAND and its
   children, processes born since the last look, earlier clients of that port, earlier socket
   owners of the socket's uid); a walk over every process is the last resort.  As root, a packet socket
   (a BPF filter lets only TCP SYNs through) sees each SYN on the ports: a thread of its own looks
   the connecting socket up at once (an exact netlink lookup) and its owner in COMMAND's tree,
   earlier clients of the port and earlier owners of its user, without waiting for a poll to end.
   Where the kernel allows, the filter is an eBPF one that also notes who sent each SYN on
   loopback, as it is sent (:mod:`~osflow.record.ebpf`): a connection that closes before any look
   into /proc (0.2 ms on a loaded machine) still gets its owner;
   and the poller runs every millisecond for a burst after it (every 10 ms otherwise).  Without
   it, the poller runs every millisecond all the time.  This catches connections
   that live a few milliseconds, which ``ss -tnp`` polling (8–45 ms per snapshot on two cores, most
   of it the ``-p`` walk) misses;
2. dumpcap captures, with a capture filter on the port map's ports (:data:`osflow.portmap.ALL_PORTS`)
   and a web server's (:data:`osflow.portmap.WEB_PORTS`: devstack's Apache on 80, a TLS front on 443),
   any address; COMMAND runs with ``SSLKEYLOGFILE`` set to ``tls-keys.log`` in DIR (owner-only),
   where the OpenStack client writes its TLS keys (Python's ``ssl``, urllib3) for ``osflow-post -r DIR``
   to decrypt with, on ``-i``'s interfaces, by default on loopback and every interface that is up
   with an address of the host's own (:func:`~osflow.record.capture.host_interfaces`: each packet
   of the host's own traffic once, where ``-i any`` sees a bridged one twice); record waits until
   the capture is really live: on a loopback interface a UDP canary datagram to a socket of
   record's own must reach the file;
3. ``ps`` before and after (``ps.txt``), with the processes that run in a container and its name
   (:class:`~osflow.record.procs.Containers`); the command lines of processes that owned a socket but
   lived only meanwhile (the ``openstack`` client) go to ``meta.json``, with the host's UTS name;
4. COMMAND runs with the user's terminal; record exits with its status.

Everything record starts is stopped by PID, also on Ctrl-C.  DIR holds ``capture.pcapng``,
``ss.txt``, ``ps.txt``, ``meta.json``, readable by the owner only (they hold passwords and tokens).
With ``-b KEY:VALUE`` (dumpcap's ring buffer) it holds the ring's ``capture_<n>_<date>.pcapng`` and one
``ss_<n>.txt`` per capture file instead (:mod:`~osflow.record.ring`); the socket log prunes what is
gone, so hours of recording keep its memory flat.

Where each part is (each module imports only the ones above it):

* :mod:`~osflow.record.kernel`: the TCP sockets from the kernel (netlink sock_diag, /proc/net/tcp);
* :mod:`~osflow.record.ebpf`: who sent each SYN on loopback, from the kernel (an eBPF socket filter);
* :mod:`~osflow.record.owners`: who connected, accepted or listened, from the kernel (eBPF on
  syscall tracepoints, offsets from BTF, a BPF ring buffer);
* :mod:`~osflow.record.procs`: processes from /proc, the ``ps`` snapshots;
* :mod:`~osflow.record.socketlog`: the socket-owner log (``ss.txt``) and its line format;
* :mod:`~osflow.record.watcher`: the thread that runs it: the kernel's events, else polls woken by each SYN;
* :mod:`~osflow.record.ring`: the ring buffer's options, files, and socket log per capture file;
* :mod:`~osflow.record.capture`: dumpcap, its filter, the canary, its errors;
* :mod:`~osflow.record.coverage`: how many connection ends the log names an owner for;
* :mod:`~osflow.record.recorder`: the options and the recording, step by step.

The socket log uses the ``ss -tnpH`` line format under ``### <epoch> …`` lines, which
:func:`osflow.tables.parse_ss` reads:

>>> from osflow import tables
>>> from osflow.record.socketlog import ss_line
>>> line = ss_line("ESTAB", 0, 0, ("127.0.0.1", 43210), ("127.0.0.1", 8778), [("openstack", 812, 5)])
>>> line
'ESTAB      0      0      127.0.0.1:43210 127.0.0.1:8778 users:(("openstack",pid=812,fd=5))'
>>> e = tables.parse_ss("### 1795628314.019138113 1 osflow-record\\n" + line).entries[0]
>>> str(e.sockname), str(e.peername), e.users[0].pid, e.time
('127.0.0.1:43210', '127.0.0.1:8778', 812, 1795628314.019138)
"""

from .recorder import RecordOptions, add_arguments, run

__all__ = ["RecordOptions", "add_arguments", "run"]
