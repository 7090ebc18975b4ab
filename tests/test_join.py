"""Join stage: who is on each end of every connection."""

from __future__ import annotations

import re

import pytest

from osflow.join import Joiner
from osflow.model import Address
from osflow.openstack import service_of_command, service_of_user_agent, tables_in
from osflow.pair import pair_messages
from osflow.tables import ProcessTable, SocketTable, parse_ps, parse_ss
from support import CASES, FIXTURES, flow, messages, result, run_post

SAMPLES = FIXTURES / "field-samples"


def sample_joiner() -> Joiner:
    ss = parse_ss((SAMPLES / "ss-tp-during-command.txt").read_text(), "ss-tp-during-command.txt")
    ps = parse_ps((SAMPLES / "ps-aux.txt").read_text(), "ps-aux.txt")
    return Joiner(SocketTable(ss.entries), ProcessTable(ps.processes))


@pytest.mark.parametrize(
    "local, remote, key",
    [
        (59030, 11211, "placement"),  # placement talks to memcached
        (43428, 3306, "placement"),  # placement -> its DB
        (43424, 3306, "keystone"),  # keystone -> its DB
        (56250, 5000, "placement"),  # placement calling keystone
        (41884, 5000, "openstackclient"),  # CLOSE-WAIT, pid in no ps table: ss's process name
        (39544, 8778, "openstackclient"),
    ],
)
def test_field_sample_joins(local, remote, key):
    host = "10.0.20.11"
    named, note = sample_joiner()._from_tables(Address(host, local), Address(host, remote), None)
    assert named is not None and named.key == key, note


def test_field_sample_server_sides():
    j = sample_joiner()
    h = "10.0.20.11"
    mysql, _ = j._from_tables(Address(h, 3306), Address(h, 43428), None)
    assert mysql.key == "mysql" and mysql.pid == 966
    memcached, _ = j._from_tables(Address(h, 11211), Address(h, 59030), None)
    assert memcached.key == "memcached"


def test_apache_listener_is_ambiguous():
    ss = parse_ss((SAMPLES / "ss-tlnp.txt").read_text())
    ps = parse_ps((SAMPLES / "ps-aux.txt").read_text())
    apache = [e for e in ss.entries if e.sockname.port == 5000][0]
    procs = ProcessTable(ps.processes)
    for user in apache.users:
        key, ambiguous = service_of_command(procs.get(user.pid).args)
        assert key is None and ambiguous


@pytest.mark.parametrize(
    "args, key",
    [
        ("(wsgi:keystone-pu -k start", "keystone"),
        ("(wsgi:placement-a -k start", "placement"),
        ("/usr/bin/python3 /usr/bin/glance-api --config-file=/etc/glance/glance-api.conf", "glance"),
        ("/usr/lib/erlang/erts-12.2.1/bin/beam.smp -W w -MBas ageffcbf -- -root /usr/lib/erlang -s rabbit boot",
         "rabbitmq"),
        ("/usr/bin/memcached -m 64 -p 11211 -u memcache -l 10.0.20.11", "memcached"),
        ("/usr/sbin/mariadbd", "mysql"),
        ("/usr/bin/uwsgi --ini /etc/keystone/keystone-uwsgi-public.ini", "keystone"),
        ("/usr/bin/python3 /usr/bin/neutron-server --config-file /etc/neutron/neutron.conf", "neutron-server"),
        ("/usr/bin/python3 /usr/bin/nova-api-wsgi --port 8774", "nova-api"),
        ("/usr/bin/python3 /usr/bin/openstack server list", "openstackclient"),
        # a service's name inside an option names nothing (seen on the lab: the CLI was named placement)
        ("/usr/bin/python3 /usr/bin/openstack --os-placement-api-version 1.2 resource class list", "openstackclient"),
        ("/usr/bin/python3 /opt/tool.py --os-nova-api-version 2.1", None),
        ("grep --color=auto -E keystone|placement", None),
    ],
)
def test_command_lines(args, key):
    assert service_of_command(args)[0] == key


def test_user_agents_and_tables():
    assert service_of_user_agent("nova-api/27.0.0 keystonemiddleware.auth_token/10.1.0") == "nova-api"
    assert tables_in("INSERT INTO resource_classes (name) VALUES ('X')") == ["resource_classes"]


@pytest.mark.tshark
@pytest.mark.parametrize("case", CASES)
def test_every_participant_is_named(case):
    for c in flow(case).connections:
        for p in (c.client, c.server):
            assert p.source != "address", f"{case}: stream {c.stream} end left as {p.label}: {p.evidence}"


@pytest.mark.tshark
def test_tables_name_the_ends_on_the_cold_capture():
    by_label = {}
    for c in flow("resource-class-list-cold").connections:
        by_label.setdefault((c.client.label, c.server.label), []).append(c)
    assert set(by_label) == {
        ("OpenStackClient", "keystone"),
        ("OpenStackClient", "placement"),
        ("keystone", "keystone DB"),
        ("placement", "placement DB"),
        ("placement", "memcached"),
        ("placement", "keystone"),
    }
    cli = by_label[("OpenStackClient", "keystone")][0].client
    assert cli.source == "ss-comm" and "openstack" in cli.evidence  # the CLI is in no ps snapshot
    placement = by_label[("placement", "memcached")][0].client
    assert placement.source == "table" and "wsgi:placement-a" in placement.evidence
    keystone_server = by_label[("OpenStackClient", "keystone")][0].server
    assert keystone_server.source == "port" and "ambiguous" in keystone_server.evidence  # apache2 owns :5000


@pytest.mark.tshark
@pytest.mark.parametrize("case", CASES)
def test_without_tables_at_least_95_percent_of_pairs_are_named_alike(case):
    truth = flow(case, with_tables=True).pairs
    bare = flow(case, with_tables=False).pairs
    assert len(truth) == len(bare) > 0
    same = sum((a.client.label, a.server.label) == (b.client.label, b.server.label)
               for a, b in zip(truth, bare, strict=True))
    assert same / len(truth) >= 0.95
    # and the names without tables come from protocol evidence, not addresses
    assert all(b.client.source in ("protocol", "port") for b in bare)


@pytest.mark.tshark
def test_explain_says_which_ends_only_a_table_could_name():
    r = result("resource-class-list-cold", explain=True)
    without = {s: (client, server) for s, client, server in r.flow.without_tables}
    assert without  # computed
    for c in r.flow.connections:
        assert without[c.stream] == (c.client.label, c.server.label)


@pytest.mark.tshark
def test_port_override_names_the_server_on_that_port():
    exchanges = pair_messages(messages("resource-class-list-cold"))
    plain = Joiner().join(exchanges)
    named = Joiner(overrides={8778: "my-api"}).join(exchanges)
    on_port = [s for s, c in named.items() if c.server_address.port == 8778]
    assert on_port
    for s in on_port:
        assert plain[s].server.label == "placement"
        assert named[s].server.label == "my-api" and "--service" in named[s].server.evidence
    # no other end changes, but placement's calls named after what it was serving then
    for s in named:
        for end in ("client",) if s in on_port else ("client", "server"):
            before, after = getattr(plain[s], end), getattr(named[s], end)
            assert after.label == before.label or (before.label == "placement" and after.label == "my-api"
                                                   and "was serving" in after.evidence), (before, after)


@pytest.mark.tshark
def test_explain_notes_the_ends_only_a_socket_table_names():
    d = FIXTURES / "captures-compute" / "server-create-two-streams"
    status, out, err = run_post(["-r", str(d / "capture.pcapng"), "--ss", str(d / "ss.txt"), "--ps", str(d / "ps.txt"),
                                 "--explain"])
    assert status == 0, err
    table = out[out.index("Connections:"):].split("\n\n")[0].splitlines()  # the table, up to the next paragraph
    rows = {line.split()[0]: line for line in table[3:]}
    assert rows["0"].split()[4] == "nova-scheduler"
    # nova's schema is every nova service's: without the tables, nothing names the scheduler
    assert re.search(r"only a socket table names the client \(without: 127\.0\.0\.1:\d+ → nova DB\)$", rows["0"])
    # the client's request to nova-api says who sent it (User-Agent: python-novaclient): no note
    assert rows["1"].split()[4] == "OpenStackClient", rows["1"]
    assert "only a socket table names" not in rows["1"]
    assert len(rows) == 2


@pytest.mark.tshark
def test_server_end_missing_from_the_socket_log_is_its_listeners():
    """nova-api's end of a short connection the socket log missed is uwsgi's: the listening socket on
    8774 is held by uwsgi's master and its workers; the evidence says so."""
    import json

    case = FIXTURES / "captures-compute" / "lab-server-create-novalidhost"
    status, out, err = run_post(["-r", str(case / "capture.pcapng"), "--ss", str(case / "ss.txt"),
                                 "--ps", str(case / "ps.txt"), "--format", "json"])
    assert status == 0, err
    pairs = [p for p in map(json.loads, out.splitlines())
             if p["server_address"] == "127.0.0.1:8774" and p["stream"] == 29]
    assert pairs and all(p["server"] == "nova-api" for p in pairs)
    assert all("the listening socket on port 8774" in p["server_evidence"] and "uwsgi" in p["server_evidence"]
               for p in pairs), pairs[0]["server_evidence"]
