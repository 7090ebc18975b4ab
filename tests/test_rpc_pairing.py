"""RpcPairing's rules on cases no capture here holds (a keep-alive reply, a fanout to two
consumers, a delivery whose publish came before the capture).

The messages are built from the model, as the decoder would make them from AMQP frames; the
real captures (tests/test_rpc.py) hold the common cases.
"""

from __future__ import annotations

from osflow.model import Address, AmqpMessage, OsloMessage
from osflow.pair import Pairing

BROKER = Address("127.0.0.1", 5672)
CALLER, CALLEE, OTHER = Address("127.0.0.1", 40001), Address("127.0.0.1", 40002), Address("127.0.0.1", 40003)
_frame = iter(range(1, 10_000))


def amqp(stream: int, local: Address, method: str, t: float, oslo: OsloMessage, exchange="nova", key="conductor"):
    publish = method == "publish"
    return AmqpMessage(protocol="amqp", stream=stream, src=local if publish else BROKER,
                       dst=BROKER if publish else local, start=t, end=t, frames=(next(_frame),),
                       is_request=publish, method=method, exchange=exchange, routing_key=key, oslo=oslo)


def run(*messages):
    p = Pairing()
    p.feed(messages)
    return p, [e for e in p.finish() if e.protocol == "rpc"]


def test_a_keep_alive_reply_does_not_end_the_call():
    call = OsloMessage(method="long_task", msg_id="m1", reply_q="reply_q1", unique_id="u1")
    alive = OsloMessage(is_reply=True, ending=False, msg_id="m1", unique_id="u2")
    final = OsloMessage(is_reply=True, result="None", msg_id="m1", unique_id="u3")
    _, (ex,) = run(
        amqp(1, CALLER, "publish", 0.0, call), amqp(2, CALLEE, "deliver", 0.1, call),
        amqp(3, CALLEE, "publish", 1.0, alive, "", "reply_q1"), amqp(4, CALLER, "deliver", 1.1, alive, "", "reply_q1"),
        amqp(3, CALLEE, "publish", 2.0, final, "", "reply_q1"), amqp(4, CALLER, "deliver", 2.1, final, "", "reply_q1"),
    )
    assert (ex.kind, ex.keepalives, ex.response.oslo.unique_id, ex.reply_delivery.oslo.unique_id) == (
        "call", 1, "u3", "u3")
    assert ex.end == 2.1 and ex.served == (0.1, 2.0)


def test_a_fanout_to_two_consumers_is_two_pairs_and_to_none_one():
    fan = OsloMessage(method="update_instance_info", unique_id="f1")
    _, pairs = run(amqp(1, CALLER, "publish", 0.0, fan, "scheduler_fanout", ""),
                   amqp(2, CALLEE, "deliver", 0.1, fan, "scheduler_fanout", ""),
                   amqp(5, OTHER, "deliver", 0.2, fan, "scheduler_fanout", ""))
    assert [(e.kind, e.server, e.server_stream, e.delivered) for e in pairs] == [
        ("fanout", CALLEE, 2, 2), ("fanout", OTHER, 5, 2)]
    lone = OsloMessage(method="push", unique_id="f2")
    _, (ex,) = run(amqp(1, CALLER, "publish", 0.0, lone, "neutron-vo-Network-1.1_fanout", ""))
    assert (ex.delivered, ex.server, ex.server_stream, ex.response) == (0, BROKER, None, None)


def test_what_came_before_the_capture_is_counted_not_guessed():
    cast = OsloMessage(method="build", unique_id="early")
    reply = OsloMessage(is_reply=True, result="None", msg_id="gone", unique_id="r1")
    p, pairs = run(amqp(2, CALLEE, "deliver", 0.1, cast), amqp(3, CALLEE, "publish", 0.2, reply, "", "reply_x"))
    assert pairs == [] and p.rpc.orphans == 2


def test_the_join_learns_topics_and_reply_queues_per_connection():
    call = OsloMessage(method="select_destinations", msg_id="m1", reply_q="reply_q1", unique_id="u1")
    reply = OsloMessage(is_reply=True, result="[]", msg_id="m1", unique_id="u2")
    p, _ = run(amqp(1, CALLER, "publish", 0.0, call, key="scheduler"),
               amqp(2, CALLEE, "deliver", 0.1, call, key="scheduler"),
               amqp(3, CALLEE, "publish", 0.2, reply, "", "reply_q1"),
               amqp(4, OTHER, "deliver", 0.3, reply, "", "reply_q1"))
    links = p.rpc.connections()
    assert links[1].calls_for == ("reply_q1",) and links[2].consumes == ("scheduler",)
    assert links[4].reply_queues == ("reply_q1",) and links[4].client == OTHER and links[4].broker == BROKER
